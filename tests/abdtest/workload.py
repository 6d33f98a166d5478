# SPDX-License-Identifier: BSD-3-Clause
"""Connecting, and the seeded workloads the tests share."""

import os
import random

import nbd

from abdtest.device import Device, Mismatch

# Write sizes that cross block edges in every way: a byte, sub-block,
# exactly a block, one more, many blocks, odd megabytes.
SIZES = [1, 7, 512, 4095, 4096, 4097, 8192, 12345, 65536, 65537, 131072,
         1 << 20, (1 << 20) + 333]


def connect(uri=None, name=None):
    """An nbd.NBD handle connected to URI (default: $uri)."""
    h = nbd.NBD()
    if name:
        h.set_handle_name(name)
    h.connect_uri(uri or os.environ["uri"])
    return h


def random_bytes(path, size, seed):
    """PATH gets SIZE bytes of data seeded by SEED."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rnd.randbytes(n))
            left -= n


def random_writes(h, dev, rnd, count, sizes=SIZES, hot=256 * 1024,
                  aligned=True):
    """COUNT writes of random data through H, applied to the model DEV:
    sizes from SIZES; offsets in turn in the first HOT bytes (if HOT, so
    that writes overlap), 4 KiB-aligned anywhere (if ALIGNED), anywhere.
    With neither, offsets are uniform and mostly unaligned: writes then
    seldom fill an aligned run, which the async filter writes back at
    once."""
    kinds = (["hot"] if hot else []) + (["aligned"] if aligned else []) + ["any"]
    for i in range(count):
        n = min(rnd.choice(sizes), dev.size)
        kind = kinds[i % len(kinds)]
        if kind == "hot":
            off = min(rnd.randrange(0, hot), dev.size - n)
        elif kind == "aligned":
            off = rnd.randrange(0, dev.size - n + 1) & ~4095
        else:
            off = rnd.randrange(0, dev.size - n + 1)
        data = rnd.randbytes(n)
        h.pwrite(data, off)
        dev.write(off, data)


def spaced_writes(h, dev, rnd, start, count, n, gap):
    """COUNT writes of N random bytes, GAP bytes apart from START."""
    for i in range(count):
        off = start + i * gap
        data = rnd.randbytes(n)
        h.pwrite(data, off)
        dev.write(off, data)


class Client:
    """A connection and the model of what the device must hold: it starts
    as the file BASE (the lower file under the filter), and every write
    made through the client is applied to it."""

    def __init__(self, base, uri=None, seed=1):
        self.h = connect(uri)
        self.size = self.h.get_size()
        self.dev = Device(self.size, base)
        self.rnd = random.Random(seed)

    def write(self, off, n, fua=False):
        """N random bytes at OFF, with FUA if asked."""
        data = self.rnd.randbytes(n)
        self.h.pwrite(data, off, nbd.CMD_FLAG_FUA if fua else 0)
        self.dev.write(off, data)

    def scattered(self, count, n=65536):
        """COUNT writes of N bytes at distinct places, none adjacent;
        returns their offsets."""
        slots = self.rnd.sample(range(0, self.size // (2 * n)), count)
        for s in slots:
            self.write(s * 2 * n, n)
        return [s * 2 * n for s in slots]

    def expect_on_file(self, path, what):
        """Raise Mismatch unless the file PATH holds the model."""
        d = self.dev.file_diff(path)
        if d is not None:
            raise Mismatch("%s: the lower file differs at byte %d" % (what, d))

    def save(self, path):
        """The model to PATH; the connection is shut down."""
        self.dev.save(path)
        self.h.shutdown()
