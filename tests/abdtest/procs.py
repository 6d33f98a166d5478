# SPDX-License-Identifier: BSD-3-Clause
"""Child processes, each in its own session and killed with the Python
process that started it (PR_SET_PDEATHSIG), stopped by PID with a
deadline; and the other waits, each with a deadline."""

import ctypes
import os
import signal
import socket
import subprocess
import time

_libc = ctypes.CDLL(None, use_errno=True)


class Timeout(Exception):
    pass


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG


def spawn(argv, log, env=None):
    """Start ARGV with stdout and stderr appended to the file LOG."""
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT,
                                start_new_session=True,
                                preexec_fn=_die_with_parent, env=env)


def stop(p, sig=signal.SIGTERM, timeout=10):
    """Signal the Popen P (continued first, in case it was stopped) and
    wait for it; SIGKILL after TIMEOUT seconds.  Returns the exit status,
    or None if it had to be killed."""
    if p is None or p.poll() is not None:
        return p.returncode if p else 0
    try:
        os.kill(p.pid, signal.SIGCONT)
        p.send_signal(sig)
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def wait_for(pred, timeout, what, interval=0.05):
    """Call PRED until it returns something true, and return that; raise
    Timeout("WHAT ...") after TIMEOUT seconds of real time."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Timeout("%s: not within %g s" % (what, timeout))
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=30):
    """The last N lines of the file PATH, as text ("" if unreadable)."""
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode(errors="replace")
    except OSError:
        return ""


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


class Memcached:
    """One memcached on a free loopback port, with a memory file (-e, in
    DIR) so that it can be restarted with its old contents."""

    def __init__(self, dir, name):
        self.name = name
        self.port = free_port()
        self.mem = "%s/%s.mem" % (dir, name)
        self.log = "%s/%s.log" % (dir, name)
        self.proc = None

    def start(self, stale=False, timeout=10):
        """Start it (empty, unless STALE: then with what its memory file
        holds) and wait until it accepts connections."""
        if not stale:
            for f in (self.mem, self.mem + ".meta"):
                if os.path.exists(f):
                    os.unlink(f)
        argv = ["memcached", "-l", "127.0.0.1", "-p", str(self.port),
                "-U", "0", "-m", "64", "-e", self.mem]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self.proc = spawn(argv, self.log)

        def up():
            if self.proc.poll() is not None:
                raise Timeout("memcached %s exited at start:\n%s"
                              % (self.name, tail(self.log)))
            return port_open(self.port)
        wait_for(up, timeout, "memcached %s on port %d"
                 % (self.name, self.port))

    def send(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        stop(self.proc, timeout=5)
