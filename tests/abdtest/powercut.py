# SPDX-License-Identifier: BSD-3-Clause
# The tests' model of nbdkit-powercut-plugin: what each 512-byte sector of
# the image may hold after a power cut (SIGKILL of nbdkit).
#
# For each sector the model keeps:
# - durable: the content a flush (or a FUA request covering the sector)
#   promised; the image must hold it unless one of the sets below allows
#   something newer;
# - excused: contents written before a FUA request to *other* sectors: the
#   plugin may make the whole cache durable on a FUA (nbdkit-powercut-
#   plugin(1) says it does), so they may be in the image even with
#   unflushed-persist=0;
# - pending: contents written since, with no flush or FUA after them: they
#   may be in the image only with unflushed-persist > 0 or past cache-max.
# Contents are kept as hashes; `cur` is the whole image as a client reads it.

import hashlib
import pickle

SECTOR = 512


def _h(b):
    return hashlib.blake2b(bytes(b), digest_size=16).digest()


class Model:
    def __init__(self, image):
        assert len(image) % SECTOR == 0
        self.cur = bytearray(image)
        self.n = len(image) // SECTOR
        self.durable = [_h(self.sector(s)) for s in range(self.n)]
        self.excused = {}
        self.pending = {}

    def sector(self, s):
        return self.cur[s * SECTOR:(s + 1) * SECTOR]

    def sectors(self, off, count):
        return range(off // SECTOR, (off + count - 1) // SECTOR + 1)

    # What the client did (after the request returned).
    def write(self, off, data, fua=False):
        self.cur[off:off + len(data)] = data
        for s in self.sectors(off, len(data)):
            self.pending.setdefault(s, set()).add(_h(self.sector(s)))
        if fua:
            self._fua(off, len(data))

    def zero(self, off, count, fua=False):
        self.write(off, bytes(count), fua)

    def _fua(self, off, count):
        mine = set(self.sectors(off, count))
        for s, hs in self.pending.items():
            if s not in mine:
                self.excused.setdefault(s, set()).update(hs)
        self.pending.clear()
        for s in mine:
            self.durable[s] = _h(self.sector(s))
            self.excused.pop(s, None)

    def flush(self):
        for s in set(self.pending) | set(self.excused):
            self.durable[s] = _h(self.sector(s))
        self.pending.clear()
        self.excused.clear()

    # Checks.
    def check_reads(self, h, chunk=1 << 20):
        """Every byte the client reads is the model's current byte."""
        for off in range(0, len(self.cur), chunk):
            n = min(chunk, len(self.cur) - off)
            got = h.pread(n, off)
            if got != self.cur[off:off + n]:
                i = next(i for i in range(n) if got[i] != self.cur[off + i])
                raise AssertionError("read differs at byte %d" % (off + i))

    def check_image(self, path, allow_pending):
        """After the cut.  Returns (bad, old, newer): sectors holding
        something not allowed, sectors that changed since their last
        durable point but hold the durable content, and sectors holding
        an allowed newer content."""
        image = open(path, "rb").read()
        assert len(image) == len(self.cur), "the image changed size"
        bad, old, newer = [], 0, 0
        for s in range(self.n):
            h = _h(image[s * SECTOR:(s + 1) * SECTOR])
            changed = s in self.pending or s in self.excused
            if h == self.durable[s]:
                old += changed
            elif h in self.excused.get(s, ()) or \
                    (allow_pending and h in self.pending.get(s, ())):
                newer += 1
            else:
                bad.append(s)
        return bad, old, newer

    def save(self, path):
        with open(path, "wb") as f:
            pickle.dump(self, f)


def load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def fail_if_bad(bad, what):
    if bad:
        raise SystemExit("%s: %d sectors hold content never allowed there, "
                         "first %s" % (what, len(bad), bad[:10]))
