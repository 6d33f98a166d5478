# SPDX-License-Identifier: BSD-3-Clause
"""A byte-exact model of a disk: what every byte must read as after the
requests the model was told about.  A test applies each request it sends
to the model too, then reads the device back and compares."""

import sys

BLOCK = 4096        # the async filter's block


class Mismatch(Exception):
    pass


class Device:
    """SIZE bytes (zeros, or the file BASE's contents)."""

    def __init__(self, size=None, base=None):
        if base is not None:
            with open(base, "rb") as f:
                self.data = bytearray(f.read())
            if size is not None and len(self.data) != size:
                raise ValueError("%s holds %d bytes, not %d"
                                 % (base, len(self.data), size))
        else:
            self.data = bytearray(size)
        self.size = len(self.data)

    def write(self, off, data):
        self.data[off:off + len(data)] = data

    def zero(self, off, n):
        self.data[off:off + n] = bytes(n)

    def trim(self, off, n, block=BLOCK):
        """A trim through the async filter: the whole blocks in the range
        (the device's end closes the last one) read as zeros; the rest is
        unchanged."""
        end = off + n
        a = (off + block - 1) // block * block
        b = self.size if end == self.size else end // block * block
        if a < b:
            self.zero(a, b - a)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.data)

    def first_diff(self, off, got):
        """The first byte at which GOT, read at OFF, differs from the
        model, or None."""
        want = self.data[off:off + len(got)]
        if got == want:
            return None
        return off + next(i for i in range(len(got)) if got[i] != want[i])

    def file_diff(self, path):
        """The first byte at which the file PATH differs from the model,
        or None."""
        with open(path, "rb") as f:
            disk = f.read()
        if disk == self.data:
            return None
        if len(disk) != self.size:
            return min(len(disk), self.size)
        return next(i for i in range(self.size) if disk[i] != self.data[i])

    def verify(self, off, got, what="read"):
        """Raise Mismatch unless GOT, read at OFF, equals the model."""
        bad = self.first_diff(off, got)
        if bad is not None:
            raise Mismatch("%s of %d bytes at %d: byte %d reads %d, the "
                           "model has %d" % (what, len(got), off, bad,
                                             got[bad - off], self.data[bad]))

    def check(self, h, what="read-back", chunk=4 << 20, rnd=None, reads=0,
              max_read=300000):
        """Read the whole device through the NBD handle H in CHUNK-byte
        reads, then READS reads of 1 to MAX_READ bytes at random places
        (from RND); raise Mismatch at the first byte that differs."""
        if h.get_size() != self.size:
            raise Mismatch("%s: the device is %d bytes, the model %d"
                           % (what, h.get_size(), self.size))
        for off in range(0, self.size, chunk):
            self.verify(off, h.pread(min(chunk, self.size - off), off), what)
        for _ in range(reads):
            n = rnd.randint(1, min(max_read, self.size))
            off = rnd.randint(0, self.size - n)
            self.verify(off, h.pread(n, off), what)


def check_or_exit(fn, *args, **kw):
    """Run FN; a Mismatch ends the program with its message (exit 1)."""
    try:
        return fn(*args, **kw)
    except Mismatch as e:
        sys.exit(str(e))
