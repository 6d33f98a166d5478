# SPDX-License-Identifier: BSD-3-Clause
"""torture's processes: the memcached servers and nbdkit it starts, each
in its own session and killed with torture, stopped by PID."""

import os
import re
import time

import abdtest.control
import abdtest.procs
from abdtest.procs import spawn, tail

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ASYNC_FILTER = os.environ.get(
    "ASYNC_FILTER", TOP + "/filters/async/.libs/nbdkit-async-filter.so")
MEMCACHE_FILTER = os.environ.get(
    "MEMCACHE_FILTER", TOP + "/filters/memcache/.libs/nbdkit-memcache-filter.so")
ABDCTL = abdtest.control.ABDCTL
POWERCUT_PLUGIN = os.environ.get(
    "POWERCUT_PLUGIN",
    TOP + "/plugins/powercut/.libs/nbdkit-powercut-plugin.so")


class Fatal(Exception):
    """The run cannot go on (a crash, a stall, a server that won't start)."""


class Interrupted(Exception):
    pass


class NbdkitDied(Exception):
    """Found out while talking to it: handled by Torture.crashed."""


def now():
    return time.monotonic()


class Memcached(abdtest.procs.Memcached):
    """One of torture's memcached servers, and what its faults did to it."""

    def __init__(self, tmp, i):
        super().__init__(tmp, "mc%d" % i)
        self.state = "down"     # up, stopped (SIGSTOP), down, saving

    def start(self, stale=False):
        try:
            super().start(stale)
        except abdtest.procs.Timeout as e:
            raise Fatal(str(e))
        self.state = "up"

    def stop(self):
        super().stop()
        self.state = "down"


class Nbdkit:
    """nbdkit serving the stack, in the foreground of a child process."""

    def __init__(self, tmp, stack, lower, size, sanitizer_preload,
                 delay_writes, store, durable=False):
        self.tmp, self.stack, self.lower, self.size = tmp, stack, lower, size
        self.durable = durable  # async-flush=store
        self.delay_writes = delay_writes
        self.store = store      # the async-store-file, or None
        self.sock = tmp + "/nbd.sock"
        self.img = tmp + "/disk.img"
        self.log = tmp + "/nbdkit.log"
        self.reqlog = tmp + "/requests.log"
        self.actl = tmp + "/async.ctl"
        self.mctl = tmp + "/memcache.ctl"
        self.wfail = tmp + "/wfail"
        self.rfail = tmp + "/rfail"
        self.syncfile = tmp + "/on-battery"
        self.proc = None
        self.env = dict(os.environ)
        if sanitizer_preload:
            self.env["LD_PRELOAD"] = sanitizer_preload
            self.env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
            self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.starts = 0
        self.start_pos = 0      # where the last start's log begins
        with open(self.img, "wb") as f:
            f.truncate(size)

    def has_async(self):
        return self.stack in ("async", "full")

    def has_memcache(self):
        return self.stack in ("memcache", "full")

    def argv(self, variant, servers):
        a = ["nbdkit", "-f", "--log=stderr", "-U", self.sock,
             "--filter=log"]
        if self.has_async():
            a.append("--filter=" + ASYNC_FILTER)
        if self.has_memcache():
            a.append("--filter=" + MEMCACHE_FILTER)
        a += ["--filter=error", "--filter=delay"]
        if self.lower == "powercut":
            a += [POWERCUT_PLUGIN, "file=" + self.img,
                  "unflushed-persist=" + variant["pc_persist"],
                  "seed=%d" % variant["pc_seed"]]
        else:
            a += ["file", self.img]
        a.append("logfile=" + self.reqlog)
        if self.has_async():
            a += ["async-control=" + self.actl,
                  "async-sync-file=" + self.syncfile,
                  "async-exit-timeout=30",
                  "async-mode=" + variant["mode"]]
            if self.store:
                a.append("async-store-file=" + self.store)
            if self.durable:
                a.append("async-flush=store")
            if variant["max_dirty"]:
                a.append("async-max-dirty=" + variant["max_dirty"])
            if variant["wb_delay"] is not None:
                a.append("async-writeback-delay=%d" % variant["wb_delay"])
            if variant["sync_writes"]:
                a += ["async-sync-writes=" + variant["sync_writes"],
                      "async-sync-rate=4M"]
            if variant["writers"]:
                a.append("async-writers=%d" % variant["writers"])
            if variant["write_size"]:
                a.append("async-write-size=" + variant["write_size"])
        if self.has_memcache():
            a += ["memcache-servers=" + servers, "memcache-id=torture",
                  "memcache-control=" + self.mctl, "memcache-retry=100",
                  "memcache-block-size=" + variant["mc_block"],
                  "memcache-write-policy=" + variant["mc_policy"]]
            if variant["mc_timeout"]:
                a.append("memcache-timeout=%d" % variant["mc_timeout"])
        for op in ("pwrite", "zero", "trim"):
            a += ["error-%s=EIO" % op, "error-%s-rate=1" % op,
                  "error-%s-file=%s" % (op, self.wfail)]
        a += ["error-pread=EIO", "error-pread-rate=1",
              "error-pread-file=" + self.rfail, "delay-read=1ms"]
        if self.delay_writes:
            a += ["delay-write=3ms", "delay-zero=3ms", "delay-trim=3ms"]
        return a

    def start(self, variant, servers):
        for p in (self.sock, self.actl, self.mctl):
            if os.path.exists(p):
                os.unlink(p)
        self.start_pos = self.log_size()
        with open(self.log, "a") as f:
            f.write("---- start %d: %s\n" % (self.starts, variant))
        self.proc = spawn(self.argv(variant, servers), self.log, self.env)
        self.starts += 1
        want = [self.sock]
        if self.has_async():
            want.append(self.actl)
        if self.has_memcache():
            want.append(self.mctl)
        deadline = now() + 30
        while not all(os.path.exists(p) for p in want):
            if self.proc.poll() is not None:
                raise Fatal("nbdkit exited at start (status %s):\n%s"
                            % (self.proc.returncode, tail(self.log)))
            if now() > deadline:
                raise Fatal("nbdkit did not start in 30 s")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since_start(self):
        """What this nbdkit (the last one started) has logged."""
        with open(self.log, "rb") as f:
            f.seek(self.start_pos)
            return f.read().decode(errors="replace")

    def replayed_bytes(self, pos):
        """What the async filter said it found in the store file at the
        start whose log begins at POS: bytes, or 0."""
        with open(self.log, "rb") as f:
            f.seek(pos)
            text = f.read()
        m = re.search(rb"holds (\d+) bytes \(\d+ entries\) acknowledged "
                      rb"by an earlier process", text)
        return int(m.group(1)) if m else 0

    def drop_store(self):
        """A power cut: the store file on tmpfs is gone with the RAM."""
        if self.store and os.path.exists(self.store):
            os.unlink(self.store)

    def abdctl(self, ctl, *args):
        return abdtest.control.abdctl(ctl, *args)

    def status(self, ctl):
        return abdtest.control.abdctl_json(ctl)
