# SPDX-License-Identifier: BSD-3-Clause
# abd tests: a hostile memcached peer.  Whoever can reach a memcached
# server can do all of this; the memcache filter must stay correct anyway.
#
#   keys(port)                 every key the server holds (lru_crawler)
#   get(port, key)             the value, or None
#   put(port, key, value)      store any bytes under any key
#   tamper(ports, how)         rewrite every value on the servers
#
# Plain sockets, no client library: the point is that nothing more than a
# TCP connection is needed.

import random
import socket
import time
import urllib.parse


def _conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s, s.makefile("rb")


def keys(port):
    """Every key on the server, from `lru_crawler metadump all`."""
    s, f = _conn(port)
    deadline = time.time() + 10
    while True:
        s.sendall(b"lru_crawler metadump all\r\n")
        out, line = [], f.readline()
        if not line.startswith(b"BUSY"):
            break
        # Another crawl is running: try again shortly.
        if time.time() > deadline:
            raise RuntimeError("lru_crawler stayed busy for 10 s")
        time.sleep(0.1)
    while line != b"END\r\n":
        if not line:
            raise RuntimeError("metadump: connection closed")
        for field in line.split():
            if field.startswith(b"key="):
                out.append(urllib.parse.unquote(field[4:].decode()))
        line = f.readline()
    s.close()
    return out


def get(port, key):
    s, f = _conn(port)
    s.sendall(b"get %s\r\n" % key.encode())
    line = f.readline()
    value = None
    if line.startswith(b"VALUE"):
        n = int(line.split()[3])
        value = f.read(n + 2)[:n]
        line = f.readline()
    assert line == b"END\r\n", line
    s.close()
    return value


def put(port, key, value):
    s, f = _conn(port)
    s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
    line = f.readline()
    s.close()
    assert line == b"STORED\r\n", line


def snapshot(ports):
    """{(port, key): value} for every item on the servers."""
    return {(p, k): v for p in ports for k in keys(p)
            for v in [get(p, k)] if v is not None}


# How to rewrite one value; each takes (value, the other values, rnd).
TAMPER = {
    "flip": lambda v, others, rnd: _flip(v, rnd),
    "truncate": lambda v, others, rnd: v[:rnd.randrange(len(v))],
    "extend": lambda v, others, rnd: v + b"\0" * rnd.randint(1, 64),
    "swap": lambda v, others, rnd: rnd.choice(others),
    "forge-v2": lambda v, others, rnd: (b"ABD2" + rnd.randbytes(12)
                                        + FORGED[:len(v) - 32]
                                        + rnd.randbytes(16)),
    "forge-v1": lambda v, others, rnd: (b"ABDM\x01\x00\x38\x00"
                                        + (len(v) - 32).to_bytes(4, "little")
                                        + bytes(44) + FORGED[:len(v) - 32]),
}

# What a forger would like the device to serve.
FORGED = b"FORGED-BY-A-MEMCACHED-PEER!" * 200


def _flip(v, rnd):
    b = bytearray(v)
    i = rnd.randrange(len(b))
    b[i] ^= 1 << rnd.randrange(8)
    return bytes(b)


def tamper(ports, how, seed=1):
    """Rewrite every value on the servers HOW; returns how many."""
    rnd = random.Random(seed)
    snap = snapshot(ports)
    values = list(snap.values())
    for (port, key), v in snap.items():
        others = [o for o in values if o != v] or [v[::-1]]
        put(port, key, TAMPER[how](v, others, rnd))
    return len(snap)
