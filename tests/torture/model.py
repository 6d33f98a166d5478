# SPDX-License-Identifier: BSD-3-Clause
"""The byte-exact model of the disk, and the comparisons of what was read
(or found in the image) against it."""

KiB, MiB = 1 << 10, 1 << 20
BLOCK = 4096                    # the async filter's block
MAX_IO = 2 * MiB                # largest read or write
POOL = 8 * MiB                  # random data that writes take slices of

EXACT, WEAK, UNKNOWN = 0, 1, 2
T_EXACT = bytes(255 if i == EXACT else 0 for i in range(256))
T_WEAK = bytes(255 if i == WEAK else 0 for i in range(256))
T_NONZERO = bytes(0 if i == 0 else 255 for i in range(256))
T_TRIM = bytes(max(i, WEAK) for i in range(256))
T_KNOWN = bytes(255 if i in (EXACT, WEAK) else 0 for i in range(256))
T_ZERO = bytes(255 if i == 0 else 0 for i in range(256))

class Model:
    def __init__(self, size):
        self.size = size
        self.data = bytearray(size)
        self.state = bytearray(size)
        self.zeros = memoryview(bytes(size))
        self.twos = memoryview(b"\x02" * size)

    def write(self, off, data):
        n = len(data)
        self.data[off:off + n] = data
        self.state[off:off + n] = self.zeros[:n]

    def zero(self, off, n):
        self.write(off, self.zeros[:n])

    def trim(self, off, n):
        self.state[off:off + n] = self.state[off:off + n].translate(T_TRIM)

    def unknown(self, off, n):
        self.state[off:off + n] = self.twos[:n]

    def reset(self, image):
        self.data[:] = image
        self.state[:] = self.zeros


CHUNK = 64 * KiB


def compare(data, state, off, got, excl):
    """Check GOT, read at OFF, against DATA/STATE, skipping the absolute
    ranges EXCL.  Returns None, or (first bad byte, number of bad bytes)."""
    n = len(got)
    if got == data[off:off + n]:
        return None
    first, nbad = None, 0
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        g = got[s:e]
        exp = data[off + s:off + e]
        if g == exp:
            continue
        st = bytearray(state[off + s:off + e])
        for a, b in excl:
            a, b = max(a, off + s), min(b, off + e)
            if a < b:
                st[a - off - s:b - off - s] = b"\x02" * (b - a)
        diff = int.from_bytes(g, "little") ^ int.from_bytes(exp, "little")
        mask = int.from_bytes(st.translate(T_EXACT), "little")
        mask |= (int.from_bytes(st.translate(T_WEAK), "little") &
                 int.from_bytes(bytes(g).translate(T_NONZERO), "little"))
        bad = diff & mask
        if bad:
            badb = bad.to_bytes(e - s, "little")  # byte i is byte s+i
            if first is None:
                first = off + s + (e - s) - len(badb.lstrip(b"\0"))
            nbad += (e - s) - badb.count(0)
    return None if first is None else (first, nbad)


def neq(x, y):
    """0xff where the byte strings X and Y (of one length) differ, else 0."""
    d = int.from_bytes(x, "little") ^ int.from_bytes(y, "little")
    return d.to_bytes(len(x), "little").translate(T_NONZERO)


def merge_ranges(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def compare_unflushed(data, state, off, got, writes):
    """After a power cut: check GOT, read at OFF and covered by the
    requests WRITES ((off, end, content) each; content a function of the
    absolute range asked), against the flushed DATA/STATE.  Each byte must
    hold its flushed content (or zero, if it was trimmed), or what one of
    WRITES wrote there; unknown bytes are not checked.  Returns (first bad
    byte or None, bad bytes, bytes that held new content)."""
    n = len(got)
    st = state[off:off + n]
    known = int.from_bytes(st.translate(T_KNOWN), "little")
    weak_zero = (int.from_bytes(st.translate(T_WEAK), "little") &
                 int.from_bytes(bytes(got).translate(T_ZERO), "little"))
    changed = int.from_bytes(neq(got, data[off:off + n]), "little")
    changed &= known & ~weak_zero
    new = 0
    for a, b, content in writes:
        a, b = max(a, off), min(b, off + n)
        if a < b:
            same = neq(got[a - off:b - off], content(a, b)).translate(T_ZERO)
            new |= int.from_bytes(same, "little") << (8 * (a - off))
    bad = changed & ~new
    nnew = (changed & new).bit_count() // 8
    if not bad:
        return None, 0, nnew
    badb = bad.to_bytes(n, "little")        # byte i is byte off+i
    first = off + n - len(badb.lstrip(b"\0"))
    return first, bad.bit_count() // 8, nnew

