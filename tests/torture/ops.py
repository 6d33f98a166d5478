# SPDX-License-Identifier: BSD-3-Clause
"""The requests: the seeded request list, the connections, and how a
request is issued, completed and checked against the model (the Requests
half of Torture)."""

import errno
import random
import re
import select
import subprocess
import time

import nbd

from .model import BLOCK, KiB, MAX_IO, MiB, POOL, compare
from .procs import Fatal, NbdkitDied, now

MODIFY = ("write", "zero", "trim")
CONN_ERRORS = (errno.ENOTCONN, errno.ECONNRESET, errno.ESHUTDOWN, errno.EPIPE)

# The request list.

class Buffers:
    """Buffers for requests, as views of long-lived bytearrays.

    python3-libnbd 1.14 keeps a reference to every nbd.Buffer passed to
    aio_pread or aio_pwrite and never drops it: with a new buffer per
    request, 2000 reads or writes of 1 MiB left 2 GB resident, and the OOM
    killer ended a one-hour soak after 35 minutes at 24 GB.  A buffer made
    with nbd.Buffer.from_buffer over a memoryview leaks only that small
    view: writes view the data pool, reads view a bytearray that goes back
    to the free list when the read is done, or when the handle it was
    issued on is closed."""

    def __init__(self, pool):
        self.pool = pool
        self.free = []

    def for_write(self, op):
        op.buf = nbd.Buffer.from_buffer(
            memoryview(self.pool)[op.ds:op.ds + op.n])

    def for_read(self, op):
        op.ba = self.free.pop() if self.free else bytearray(MAX_IO)
        op.buf = nbd.Buffer.from_buffer(memoryview(op.ba)[:op.n])

    def release(self, op):
        """OP's request is over: libnbd will not touch its buffer again."""
        if op.ba is not None:
            self.free.append(op.ba)
        op.ba = op.buf = None


class Op:
    __slots__ = ("id", "slot", "kind", "off", "n", "fua", "ds", "buf", "ba",
                 "t0", "t1", "excl", "dead", "cno", "err", "pc", "ext")

    def __init__(self, id, slot, kind, off=0, n=0, fua=False, ds=0):
        self.id, self.slot, self.kind = id, slot, kind
        self.off, self.n, self.fua, self.ds = off, n, fua, ds
        self.buf = self.ba = None
        self.t0 = self.t1 = None
        self.excl = None
        self.dead = False
        self.cno = None
        self.err = None
        self.pc = False
        self.ext = None

    def end(self):
        return self.off + self.n

    def __str__(self):
        if self.kind == "flush":
            return "#%d conn%d flush" % (self.id, self.slot)
        return "#%d conn%d %s [%d, +%d)%s%s" % (
            self.id, self.slot, self.kind, self.off, self.n,
            " fua" if self.fua else "",
            " data@%d" % self.ds if self.kind == "write" else "")


class OpGen:
    """The request list: a pure function of the seed, size and number of
    connections."""

    def __init__(self, seed, size, conns):
        self.r = random.Random(seed)
        self.size, self.conns = size, conns
        self.next_id = 0
        # Hot zones, where most requests go, so that they overlap.
        self.hot = [self.r.randrange(0, size - MiB) // BLOCK * BLOCK
                    for _ in range(4)]

    def _len(self, kind):
        r = self.r
        c = r.random()
        if kind in ("zero", "trim") and r.random() < 0.03:
            n = r.randint(16 * MiB + 1, 24 * MiB)   # memcache mass invalidation
        elif c < 0.35:
            n = r.randint(1, BLOCK)
        elif c < 0.70:
            n = BLOCK * r.randint(1, 16)
        elif c < 0.90:
            n = r.randint(BLOCK + 1, 256 * KiB)
        elif c < 0.98:
            n = r.randint(256 * KiB, MAX_IO)
        else:
            n = MAX_IO
        return min(n, self.size)

    def _off(self, n):
        r = self.r
        a = r.random()
        align = BLOCK if a < 0.45 else 512 if a < 0.60 else 1
        if r.random() < 0.6 and n <= MiB:
            lo = r.choice(self.hot)
            hi = lo + MiB
        else:
            lo, hi = 0, self.size
        off = r.randint(lo, max(lo, hi - n)) // align * align
        return max(0, min(off, self.size - n))

    def next(self):
        r = self.r
        id = self.next_id
        self.next_id += 1
        slot = r.randrange(self.conns)
        x = r.random()
        kind = ("read" if x < 0.38 else "extents" if x < 0.42 else
                "write" if x < 0.78 else "zero" if x < 0.86 else
                "trim" if x < 0.94 else "flush")
        if kind == "flush":
            return Op(id, slot, kind)
        n = self._len(kind)
        off = self._off(n)
        fua = kind in MODIFY and r.random() < 0.1
        ds = r.randrange(0, POOL - n + 1) if kind == "write" else 0
        return Op(id, slot, kind, off, n, fua, ds)


#----------------------------------------------------------------------
# Connections.

class Conn:
    def __init__(self, slot):
        self.slot = slot
        self.h = None
        self.cno = None         # nbdkit's connection number (log filter)
        self.inflight = {}      # op id -> Op
        self.closing = False    # NBD_CMD_DISC sent, waiting for the close
        self.orphans = []       # dead ops whose buffers the handle may use

    def fileno(self):
        return self.h.aio_get_fd()


class DeadRange:
    """A write in flight when its connection was closed: unknown until it
    is rewritten by a request issued after nbdkit finished the connection."""
    __slots__ = ("a", "b", "cno", "seen")

    def __init__(self, a, b, cno):
        self.a, self.b, self.cno, self.seen = a, b, cno, None



class Requests:
    """Issuing requests, their completions and the checks of what they
    returned; a half of Torture (run.py), whose state it uses."""

    def conflicts(self, op):
        if op.kind not in MODIFY:
            return False
        for w in self.inflight_mods.values():
            if w.off < op.end() and op.off < w.end():
                return True
        return False

    def issue(self, op):
        c = self.conns[op.slot]
        op.t0 = now()
        op.cno = c.cno
        cb = lambda err, op=op: self.done.append((op, err.value)) or 1
        flags = nbd.CMD_FLAG_FUA if op.fua else 0
        self.oplog.write("%s %s\n" % (self.ts(op.t0), op))
        try:
            if op.kind in ("read", "extents"):
                op.excl = [(w.off, w.end()) for w in self.inflight_mods.values()
                           if w.off < op.end() and op.off < w.end()]
                if op.kind == "read":
                    self.bufs.for_read(op)
                    c.h.aio_pread(op.buf, op.off, completion=cb)
                else:
                    op.ext = []
                    ext = lambda ctx, off, entries, err, op=op: \
                        op.ext.append((ctx, off, list(entries))) or 0
                    c.h.aio_block_status(op.n, op.off, ext, completion=cb)
                self.inflight_reads[op.id] = op
            elif op.kind == "flush":
                c.h.aio_flush(completion=cb)
            else:
                if op.kind == "write":
                    self.bufs.for_write(op)
                    c.h.aio_pwrite(op.buf, op.off, completion=cb, flags=flags)
                elif op.kind == "zero":
                    c.h.aio_zero(op.n, op.off, completion=cb, flags=flags)
                else:
                    c.h.aio_trim(op.n, op.off, completion=cb, flags=flags)
                self.inflight_mods[op.id] = op
                self.history.append(op)
                for r in self.inflight_reads.values():
                    if r.off < op.end() and op.off < r.end():
                        r.excl.append((op.off, op.end()))
                if self.pc is not None and self.pc["snap"] is not None:
                    self.pc["after"].append(op)
        except nbd.Error as e:
            self.bufs.release(op)       # not issued: libnbd did not take it
            if self.nbdkit_gone():
                raise NbdkitDied()      # issued again after the restart
            self.fail_unexpected("%s: could not be issued: %s" % (op, e))
            self.inflight_mods.pop(op.id, None)
            self.inflight_reads.pop(op.id, None)
            if op.kind in MODIFY:
                op.dead = True
                self.model.unknown(op.off, op.n)
            self.reconnect_if_dead(c)
            return
        c.inflight[op.id] = op
        self.issued += 1
        self.last_progress = now()

    def reconnect_if_dead(self, c):
        if c.h is not None and not c.h.aio_is_dead() and not c.h.aio_is_closed():
            return
        self.kill_inflight(c, "disconnect")
        self.close_conn(c)
        if self.nbd.alive():
            self.connect(c)

    def issue_some(self):
        for _ in range(64):
            if self.pc is not None:
                if not self.powercut_step():
                    return
            elif self.crash is not None:
                if not self.crash_step():
                    return
            elif self.issued >= self.next_fault_at:
                self.fault()
                self.next_fault_at = self.issued + self._fault_gap()
                continue
            if self.a.max_ops and self.issued >= self.a.max_ops:
                return
            if self.next_op is None:
                self.next_op = self.gen.next()
            op = self.next_op
            c = self.conns[op.slot]
            if c.closing or c.h is None:
                self.blocked["closing"] = self.blocked.get("closing", 0) + 1
                return
            if len(c.inflight) >= self.a.depth:
                self.blocked["depth"] = self.blocked.get("depth", 0) + 1
                return
            if self.conflicts(op):
                self.blocked["overlap"] = self.blocked.get("overlap", 0) + 1
                return
            self.inflight_sum += len(self.inflight_mods) + len(self.inflight_reads)
            self.issue(op)
            self.next_op = None

    # ---- completions

    def poll(self, timeout):
        rl, wl = [], []
        for c in self.conns:
            if c.h is None or c.h.aio_is_closed() or c.h.aio_is_dead():
                continue
            d = c.h.aio_get_direction()
            if d & nbd.AIO_DIRECTION_READ:
                rl.append(c)
            if d & nbd.AIO_DIRECTION_WRITE:
                wl.append(c)
        if not rl and not wl:
            time.sleep(timeout)
            return
        r, w, _ = select.select(rl, wl, [], timeout)
        for c in r:
            self.notify(c, c.h.aio_notify_read)
        for c in w:
            if c.h is not None:
                self.notify(c, c.h.aio_notify_write)

    def notify(self, c, fn):
        try:
            fn()
        except nbd.Error as e:
            if self.stopping:
                return
            if self.nbdkit_gone():
                raise NbdkitDied()
            if self.nbd.alive():
                self.fail_unexpected("connection %d: %s" % (c.slot, e))
            self.reconnect_if_dead(c)

    def reap(self):
        done, self.done = self.done, []
        for op, err in done:
            if op.dead:
                continue
            op.t1 = now()
            op.err = err
            self.conns[op.slot].inflight.pop(op.id, None)
            self.inflight_mods.pop(op.id, None)
            self.inflight_reads.pop(op.id, None)
            self.completed += 1
            self.last_progress = op.t1
            self.oplog.write("%s %d %s\n" % (self.ts(op.t1), op.id,
                                            errno.errorcode.get(err, err)
                                            if err else "ok"))
            if err and self.conns[op.slot].closing and \
                    op.cno == self.conns[op.slot].cno and not self.stopping:
                # Cut off by the disconnect: the server may or may not
                # have done it.
                self.count_expected(op, "disconnect")
                if op.kind in MODIFY:
                    self.model.unknown(op.off, op.n)
                    self.dead.append(DeadRange(op.off, op.end(), op.cno))
            else:
                getattr(self, "done_" + op.kind)(op, err)
            self.bufs.release(op)

    def count_expected(self, op, why):
        k = "%s:%s" % (op.kind, why)
        self.expected_errors[k] = self.expected_errors.get(k, 0) + 1
        self.oplog.write("%s %d expected error: %s\n" % (self.ts(), op.id, why))

    def nbdkit_gone(self):
        """After a connection error: has nbdkit died (an abort may take a
        moment)?"""
        try:
            self.nbd.proc.wait(2)
            return True
        except subprocess.TimeoutExpired:
            return False

    def expected(self, op, err, why):
        if err in CONN_ERRORS and not self.stopping and self.nbdkit_gone():
            raise NbdkitDied()
        if self.stopping:
            why, err = "nbdkit-stopping", errno.EIO
        if err == errno.EIO and why:
            self.count_expected(op, why)
            return True
        self.fail_unexpected(
            "%s failed: %s (lower write errors %s, lower read errors %s, "
            "sync %s during it)" % (
                op, errno.errorcode.get(err, err),
                self.werr.overlaps(op.t0, op.t1),
                self.rerr.overlaps(op.t0, op.t1), self.maybe_sync(op)))
        return False

    def maybe_sync(self, op):
        return (self.sync_ctl.overlaps(op.t0, op.t1) or
                self.sync_file.overlaps(op.t0, op.t1))

    def surely_sync(self, op):
        return (self.sync_ctl.covers(op.t0, op.t1) or
                self.sync_file.covers(op.t0, op.t1))

    def lower_flushed(self, t):
        """A lower flush began at T: what was acknowledged before is on the
        disk."""
        self.through = [w for w in self.through if w.t1 >= t]

    def acknowledged(self, op):
        """Track OP, a write, zero or trim that succeeded, for self.through.
        A FUA request in sync mode flushes the disk after it is written."""
        if not self.nbd.has_async() or self.a.lower != "powercut":
            return
        if op.fua and self.surely_sync(op):
            self.lower_flushed(op.t0)
        elif self.maybe_sync(op):
            self.through.append(op)

    def flush_may_fail(self, op):
        """A flush (or FUA) may return EIO while failed writes are pending:
        during lower write errors and until the retries succeeded."""
        if not self.nbd.has_async():
            return None
        if self.werr.overlaps(op.t0, op.t1):
            return "werr"
        end = self.werr.last_end()
        if end is not None and op.t1 - end < 15:
            return "werr-retry"
        st = self.nbd.status(self.nbd.actl)
        if st and int(st.get("failed_bytes", 0)) > 0:
            return "failed-bytes"
        return None

    def done_read(self, op, err):
        if err:
            self.expected(op, err, "rerr" if self.rerr.overlaps(op.t0, op.t1)
                          else None)
            return
        got = op.buf.to_bytearray()
        bad = compare(self.model.data, self.model.state, op.off, got, op.excl)
        if bad:
            self.mismatch("read %s" % op, op, bad[0], bad[1], got,
                          self.model.data, self.model.state)

    def done_extents(self, op, err):
        """Every range said to read as zeros must: nbdcopy and qemu-img
        skip them."""
        if err:
            self.expected(op, err, None)
            return
        pos = op.off
        for ctx, off, entries in op.ext:
            if ctx != nbd.CONTEXT_BASE_ALLOCATION:
                continue
            pos = off
            for i in range(0, len(entries) - 1, 2):
                n, flags = entries[i], entries[i + 1]
                a, b = max(pos, op.off), min(pos + n, op.end())
                if a < b and flags & nbd.STATE_ZERO:
                    zeros = bytes(b - a)
                    bad = compare(self.model.data, self.model.state, a,
                                  zeros, op.excl)
                    if bad:
                        self.mismatch("extents %s said [%d, +%d) reads as "
                                      "zeros (flags %d)" % (op, a, b - a, flags),
                                      Op(-1, -1, "extent", a, b - a),
                                      bad[0], bad[1], bytes(b - a),
                                      self.model.data, self.model.state)
                        return
                pos += n
        if pos <= op.off:
            self.fail_unexpected("%s: no extent returned" % op)

    def modify_failed(self, op, err):
        """Which failures of a write, zero or trim are documented:
        - without the async filter, any while lower writes fail;
        - with it, while lower writes fail in sync mode (writes to clean
          ranges go through); while lower reads fail, a write or zero with a
          partial block (read-modify-write of a block the store does not
          hold); a FUA request in sync mode, when a flush may fail.
        Either way its range is unknown until rewritten."""
        a = self.nbd.has_async()
        why = None
        if self.werr.overlaps(op.t0, op.t1) and (not a or self.maybe_sync(op)):
            why = "werr"
        elif a and op.kind != "trim" and self.rerr.overlaps(op.t0, op.t1) \
                and (op.off % BLOCK or op.end() % BLOCK):
            why = "rerr-rmw"
        elif a and op.fua and self.maybe_sync(op):
            why = self.flush_may_fail(op)
        self.expected(op, err, why)
        self.model.unknown(op.off, op.n)

    def applied(self, op):
        """OP has landed in the model: bytes under a dead write whose
        connection nbdkit may not have finished before OP was issued stay
        unknown."""
        for d in self.dead:
            if d.a < op.end() and op.off < d.b and \
                    (d.seen is None or op.t0 < d.seen):
                a, b = max(d.a, op.off), min(d.b, op.end())
                self.model.unknown(a, b - a)

    def done_write(self, op, err):
        if err:
            return self.modify_failed(op, err)
        if self.a.break_model and op.id % 100 == 99:
            self.broke_model += 1     # the checks must notice
            if self.broke_model <= 3:
                self.say("--break-model: not applying %s to the model" % op)
            return
        self.model.write(op.off, self.pool[op.ds:op.ds + op.n])
        self.applied(op)
        self.acknowledged(op)

    def done_zero(self, op, err):
        if err:
            return self.modify_failed(op, err)
        self.model.zero(op.off, op.n)
        self.applied(op)
        self.acknowledged(op)

    def done_trim(self, op, err):
        if err:
            return self.modify_failed(op, err)
        self.model.trim(op.off, op.n)
        self.applied(op)
        self.acknowledged(op)

    def done_flush(self, op, err):
        if err:
            why = self.flush_may_fail(op)
            self.expected(op, err, why)
        if self.pc is not None and op is self.pc.get("flush"):
            self.pc["flush_ok"] = err == 0
            self.pc["flush"] = None
        if err == 0 and self.surely_sync(op):
            self.lower_flushed(op.t0)
        if self.crash is not None and err == 0:
            self.crash["flushes"] += 1

    def watch_disconnects(self):
        if not any(d.seen is None for d in self.dead):
            return
        try:
            with open(self.nbd.reqlog, "rb") as f:
                f.seek(self.reqlog_pos)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.reqlog_pos += end
        t = now()
        for m in re.finditer(rb"connection=(\d+) Disconnect", chunk[:end]):
            cno = int(m.group(1))
            for d in self.dead:
                if d.cno == cno and d.seen is None:
                    d.seen = t

    def read_back(self, what):
        """Read the whole device through connection 0 and compare it with
        the model, with nothing else in flight.  Returns True if it
        matched."""
        c = self.conns[0]
        ok = True
        for off in range(0, self.size, MAX_IO * 8):
            ops = []
            for o in range(off, min(off + MAX_IO * 8, self.size), MAX_IO):
                op = Op(-1, 0, "read", o, min(MAX_IO, self.size - o))
                self.bufs.for_read(op)
                op.excl = []
                op.t0 = now()
                ops.append((op, c.h.aio_pread(op.buf, o)))
            deadline = now() + 120
            while c.h.aio_in_flight() > 0:
                if now() > deadline:
                    raise Fatal("%s: reads of 16 MiB took over 120 s" % what)
                c.h.poll(1000)
            for op, cookie in ops:
                op.t1 = now()
                try:
                    c.h.aio_command_completed(cookie)
                except nbd.Error as e:
                    self.fail_unexpected("%s: %s: %s" % (what, op, e))
                    self.bufs.release(op)
                    ok = False
                    continue
                got = op.buf.to_bytearray()
                self.bufs.release(op)
                bad = compare(self.model.data, self.model.state, op.off,
                              got, [])
                if bad:
                    ok = False
                    self.mismatch("%s %s" % (what, op), op, bad[0],
                                  bad[1], got, self.model.data,
                                  self.model.state)
        return ok

