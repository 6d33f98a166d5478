# SPDX-License-Identifier: BSD-3-Clause
# abd tests: a hostile memcached server, for either protocol.
#
#   python3 memcached_hostile.py PROTOCOL PORTFILE LOGFILE [honest]
#
# Listens on a free loopback port (written to PORTFILE once it listens)
# and serves the memcache filter's batches: the text protocol (get, set,
# delete, each answered) or the meta protocol (mg, ms, md with q and O<i>,
# ended by mn).  Batches alternate: one answered like memcached (values
# kept in a dict, so the filter gets real hits), then one answered by the
# next attack of the protocol's list, and so on.  Each attack's name and
# the kind of batch it answered are appended to LOGFILE when it is sent,
# so a test can check that all were.
#
# Every attack is a reply a client must survive: lengths that overflow or
# are negative, keys longer than memcached allows, frames cut short
# (then the connection closed, or left hanging past the deadline),
# garbage, opaque tokens that name nothing, lines that never end, values
# of the wrong size (framed right: refused by the value format alone) and
# values longer than a block could be.
#
# With "honest", every batch is answered like memcached and no attack is
# made: with PROTOCOL text, a server (or proxy) that speaks the text
# protocol only, and answers ERROR to a meta command.
#
# Stops on SIGTERM (or when its parent dies: PR_SET_PDEATHSIG).

import ctypes
import os
import signal
import socket
import sys
import threading
import time

BIG = 2 * (32 + 4096) + 1       # longer than the filter accepts (4K blocks)
HUGE = 18446744073709551614     # wrapped libmemcached 1.1.4's buffer size


def text_attacks():
    """(name, function of the batch's commands -> bytes or a callable)."""
    def first_key(cmds):
        return next((k for c in cmds for k in c["keys"]), b"k")

    def wrong_size(cmd):
        """A well-framed answer with 100-byte values."""
        if cmd["op"] != b"get":
            return b"STORED\r\n" if cmd["op"] == b"set" else b"DELETED\r\n"
        return b"".join(b"VALUE %s 0 100\r\n%s\r\n" % (k, b"\x5a" * 100)
                        for k in cmd["keys"]) + b"END\r\n"

    return [
        ("huge-length", lambda c: b"VALUE %s 0 %d\r\n" % (first_key(c), HUGE)),
        ("negative-length", lambda c: b"VALUE %s 0 -1\r\nEND\r\n" % first_key(c)),
        ("long-key", lambda c: b"VALUE " + b"k" * 300 + b" 0 5\r\nhello\r\nEND\r\n"),
        ("long-key-prefix", lambda c: b"VALUE %s%s 0 5\r\nhello\r\nEND\r\n"
         % (first_key(c), b"x" * 400)),
        ("partial-close", lambda c: (b"VALUE %s 0 4128\r\n" % first_key(c))
         + b"\0" * 100, "close"),
        ("partial-stall", lambda c: b"VALUE %s 0 41" % first_key(c), "stall"),
        ("garbage", lambda c: bytes(range(256)) * 2),
        ("endless-line", None),
        ("wrong-size", lambda c: b"".join(wrong_size(cmd) for cmd in c)),
        ("too-long", lambda c: b"VALUE %s 0 %d\r\n%s\r\nEND\r\n"
         % (first_key(c), BIG, b"\0" * BIG)),
        ("other-key", lambda c: b"VALUE abd3:AAAAAAAAAAAAAAAAAAAAAA 0 5\r\nhello"
         b"\r\nEND\r\n"),
        ("flags-overflow", lambda c: b"VALUE %s 4294967296 1\r\nx\r\nEND\r\n"
         % first_key(c)),
        ("error-line", lambda c: b"ERROR\r\n"),
        ("short-value", lambda c: b"VALUE %s 0 50\r\nshort\r\nEND\r\n"
         % first_key(c)),
        ("close", lambda c: b"", "close"),
    ]


def meta_attacks():
    def gets(cmds):
        return [c for c in cmds if c["op"] == b"mg"] or cmds[:1]

    def va(c, n, data):
        return b"VA %d O%s\r\n%s\r\n" % (n, gets(c)[0]["opaque"], data)

    return [
        ("huge-length", lambda c: b"VA %d O%s\r\n" % (HUGE, gets(c)[0]["opaque"])),
        ("negative-length", lambda c: b"VA -1 O%s\r\nMN\r\n" % gets(c)[0]["opaque"]),
        ("long-key", lambda c: b"VA 5 O%s k%s\r\nhello\r\nMN\r\n"
         % (gets(c)[0]["opaque"], b"a" * 300)),
        ("wrong-opaque", lambda c: b"VA 5 O99999\r\nhello\r\nMN\r\n"),
        ("opaque-twice", lambda c: va(c, 1, b"x") + va(c, 1, b"y") + b"MN\r\n"),
        ("partial-close", lambda c: (b"VA 4128 O%s\r\n" % gets(c)[0]["opaque"])
         + b"\0" * 100, "close"),
        ("partial-stall", lambda c: b"VA 41", "stall"),
        ("garbage", lambda c: bytes(range(256)) * 2),
        ("endless-line", None),
        ("wrong-size", lambda c: b"".join(b"VA 100 O%s\r\n%s\r\n"
                                          % (g["opaque"], b"\x5a" * 100)
                                          for g in c if g["op"] == b"mg")
         + b"MN\r\n"),
        ("too-long", lambda c: va(c, BIG, b"\0" * BIG) + b"MN\r\n"),
        ("error-line", lambda c: b"CLIENT_ERROR bad command line format\r\n"),
        ("short-value", lambda c: va(c, 50, b"short")[:-2] + b"\r\nMN\r\n"),
        ("close", lambda c: b"", "close"),
    ]


class Server:
    def __init__(self, protocol, log, honest=False):
        self.protocol = protocol
        self.always_honest = honest
        self.attacks = text_attacks() if protocol == "text" else meta_attacks()
        self.log = log
        self.lock = threading.Lock()
        self.store = {}
        self.batches = {"get": 0, "store": 0}
        self.next_attack = {"get": 0, "store": 0}

    def pick(self, cmds):
        """None (answer honestly) or the next attack, alternately; batches
        with a get and batches of stores and deletes take turns apart, so
        that every attack meets a get.  Logged as "NAME get|store"."""
        if self.always_honest:
            return None
        kind = "get" if any(c["op"] in (b"get", b"mg") for c in cmds) \
            else "store"
        with self.lock:
            self.batches[kind] += 1
            if self.batches[kind] % 2:
                return None
            a = self.attacks[self.next_attack[kind] % len(self.attacks)]
            self.next_attack[kind] += 1
            with open(self.log, "a") as f:
                f.write("%s %s\n" % (a[0], kind))
        return a

    # ---- reading requests ----

    def parse(self, buf):
        """Complete commands at the start of BUF: (commands, bytes used,
        batch complete)."""
        cmds, pos = [], 0
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                return cmds, pos, False
            words = buf[pos:nl].split()
            end = nl + 2
            cmd = {"op": words[0] if words else b"", "keys": [], "opaque": b"0"}
            for w in words[1:]:
                if w[:1] == b"O" and self.protocol == "meta":
                    cmd["opaque"] = w[1:]
            if cmd["op"] in (b"get", b"gets"):
                cmd["keys"] = words[1:]
            elif cmd["op"] in (b"set", b"ms"):
                n = int(words[4] if cmd["op"] == b"set" else words[2])
                if len(buf) < end + n + 2:
                    return cmds, pos, False
                cmd["keys"], cmd["data"] = [words[1]], buf[end:end + n]
                end += n + 2
            elif cmd["op"] in (b"delete", b"mg", b"md"):
                cmd["keys"] = [words[1]]
            cmds.append(cmd)
            pos = end
            if cmd["op"] == b"mn":
                return cmds, pos, True
            if self.protocol == "text" and pos == len(buf):
                return cmds, pos, True

    # ---- answering honestly ----

    def honest(self, cmds):
        out = []
        with self.lock:
            for c in cmds:
                op, keys = c["op"], c["keys"]
                if op[:1] == b"m" and self.protocol != "meta":
                    out.append(b"ERROR\r\n")
                elif op == b"get":
                    for k in keys:
                        if k in self.store:
                            v = self.store[k]
                            out.append(b"VALUE %s 0 %d\r\n%s\r\n" % (k, len(v), v))
                    out.append(b"END\r\n")
                elif op == b"set":
                    self.store[keys[0]] = c["data"]
                    out.append(b"STORED\r\n")
                elif op == b"delete":
                    out.append(b"DELETED\r\n" if self.store.pop(keys[0], None)
                               is not None else b"NOT_FOUND\r\n")
                elif op == b"mg":
                    if keys[0] in self.store:
                        v = self.store[keys[0]]
                        out.append(b"VA %d O%s\r\n%s\r\n" % (len(v), c["opaque"], v))
                elif op == b"ms":
                    self.store[keys[0]] = c["data"]
                elif op == b"md":
                    self.store.pop(keys[0], None)
                elif op == b"mn":
                    out.append(b"MN\r\n")
                else:
                    out.append(b"ERROR\r\n")
        return b"".join(out)

    # ---- one connection ----

    def serve(self, s):
        buf = b""
        s.settimeout(30)
        try:
            while True:
                data = s.recv(1 << 16)
                if not data:
                    return
                buf += data
                while True:
                    cmds, used, complete = self.parse(buf)
                    if not complete:
                        break
                    buf = buf[used:]
                    if not self.answer(s, cmds):
                        return
        except (OSError, ValueError, IndexError):
            return
        finally:
            s.close()

    def answer(self, s, cmds):
        """Answer CMDS; False when the connection is to be dropped."""
        attack = self.pick(cmds)
        if attack is None:
            s.sendall(self.honest(cmds))
            return True
        name, fn = attack[0], attack[1]
        if name == "endless-line":
            # A line that never ends, until the client hangs up (bounded:
            # 64 MiB or 10 s).
            deadline = time.monotonic() + 10
            s.sendall(b"VALUE " if self.protocol == "text" else b"VA ")
            for _ in range(1024):
                if time.monotonic() > deadline:
                    break
                s.sendall(b"9" * 65536)
            return False
        s.sendall(fn(cmds))
        how = attack[2] if len(attack) > 2 else None
        if how == "close":
            return False
        if how == "stall":
            time.sleep(3)       # past any memcache-timeout of the test
            return False
        return True


def main():
    protocol, portfile, log = sys.argv[1:4]
    honest = sys.argv[4:5] == ["honest"]
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    server = Server(protocol, log, honest)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=server.serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
