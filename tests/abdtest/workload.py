# SPDX-License-Identifier: BSD-3-Clause
"""Connecting, and the seeded workloads the tests share."""

import os
import random

import nbd

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
    sizes from SIZES; offsets in turn in the first HOT bytes (so that
    writes overlap), 4 KiB-aligned anywhere (if ALIGNED), anywhere."""
    kinds = 3 if aligned else 2
    for i in range(count):
        n = min(rnd.choice(sizes), dev.size)
        if i % kinds == 0:
            off = min(rnd.randrange(0, hot), dev.size - n)
        elif kinds == 3 and i % kinds == 1:
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
