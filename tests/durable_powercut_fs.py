# SPDX-License-Identifier: BSD-3-Clause
"""The filesystem workload and checker of test-async-durable-powercut-fs.sh.

  run TOP LOG SEED SECONDS   fsync-heavy file operations in TOP (a mounted
                             filesystem) until SECONDS pass or an
                             operation fails (the device died)
  check TOP STATE LOG        the files in TOP/d are those STATE and LOG
                             say, with the right SHA-256; then STATE
                             becomes what TOP/d holds

Files under TOP/d are the checked ones.  One operation at a time, each
made durable the way an application does it before it says "saved":
  put (new)   write d/NAME, fsync it, fsync d
  put (over)  write d/.tmp-NAME, fsync it, rename it over d/NAME, fsync d
  del         unlink d/NAME, fsync d
Between them, files in TOP/noise are written and removed without fsync:
the filesystem must stay consistent whatever becomes of them, but their
content is not checked.

LOG lines, each written to the host's file before the next step (the
host does not crash, only the device under TOP dies):
  B put NAME SHA256 | B del NAME    before an operation
  E                                 it returned, fsync of d included
STATE: "NAME SHA256" a line, the files d held after the last check.

Allowed after a cut: every name as the last completed operation left it
(from STATE, then LOG), except the name of an operation begun and not
completed, which may be as before it or as after it.  Files named
.tmp-* are ignored (a replacement cut before its rename).
"""

import hashlib
import os
import random
import sys
import time


def sha(data):
    return hashlib.sha256(data).hexdigest()


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data, durable):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_state(path):
    state = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, digest = line.split()
                state[name] = digest
    return state


def run(top, log_path, seed, seconds):
    rnd = random.Random(seed)
    d = os.path.join(top, "d")
    noise = os.path.join(top, "noise")
    os.makedirs(d, exist_ok=True)
    os.makedirs(noise, exist_ok=True)
    fsync_path(top)
    for name in os.listdir(d):
        if name.startswith(".tmp-"):
            os.unlink(os.path.join(d, name))
    fsync_path(d)
    names = sorted(n for n in os.listdir(d) if not n.startswith(".tmp-"))
    deadline = time.monotonic() + seconds
    log = open(log_path, "a", buffering=1)
    ops = 0
    try:
        while time.monotonic() < deadline:
            r = rnd.random()
            if r < 0.3:
                # Noise: unfsynced files, some removed again.
                write_file(os.path.join(noise, "n%d" % rnd.randrange(64)),
                           rnd.randbytes(rnd.randrange(1, 128 * 1024)), False)
                continue
            if r < 0.4 and names:
                name = rnd.choice(names)
                log.write("B del %s\n" % name)
                os.unlink(os.path.join(d, name))
                fsync_path(d)
                log.write("E\n")
                names.remove(name)
                ops += 1
                continue
            data = rnd.randbytes(rnd.randrange(1, 256 * 1024))
            if r < 0.6 and names:
                name = rnd.choice(names)
                log.write("B put %s %s\n" % (name, sha(data)))
                tmp = os.path.join(d, ".tmp-" + name)
                write_file(tmp, data, True)
                os.rename(tmp, os.path.join(d, name))
            else:
                name = "f%d-%d" % (seed, ops)
                log.write("B put %s %s\n" % (name, sha(data)))
                write_file(os.path.join(d, name), data, True)
                names.append(name)
            fsync_path(d)
            log.write("E\n")
            ops += 1
    except OSError as e:                # the device died: expected
        print("stopped after %d operations: %s" % (ops, e))
        return
    print("ran %d operations, %.1f s, no cut" % (ops, seconds))


def check(top, state_path, log_path):
    state = read_state(state_path)
    pending = None                      # (name, digest or None)
    durable = 0
    with open(log_path) as f:
        for line in f:
            w = line.split()
            if w[0] == "B":
                pending = (w[2], w[3] if w[1] == "put" else None)
            elif w[0] == "E":
                name, digest = pending
                if digest is None:
                    state.pop(name, None)
                else:
                    state[name] = digest
                pending = None
                durable += 1
    d = os.path.join(top, "d")
    found = {}
    for name in os.listdir(d):
        if not name.startswith(".tmp-"):
            with open(os.path.join(d, name), "rb") as f:
                found[name] = sha(f.read())
    errors = []
    for name in sorted(set(state) | set(found)):
        allowed = {state.get(name)}
        if pending and pending[0] == name:
            allowed.add(pending[1])
        if found.get(name) not in allowed:
            errors.append("%s: %s, expected %s" % (
                name, found.get(name, "missing"),
                " or ".join(a or "missing" for a in allowed)))
    if errors:
        print("%d of %d files wrong (%d fsynced operations this round):"
              % (len(errors), len(state), durable))
        for e in errors[:10]:
            print("  " + e)
        sys.exit(1)
    print("%d files right (%d fsynced operations this round)"
          % (len(found), durable))
    with open(state_path, "w") as f:
        for name in sorted(found):
            f.write("%s %s\n" % (name, found[name]))


def main():
    cmd = sys.argv[1]
    if cmd == "run":
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
