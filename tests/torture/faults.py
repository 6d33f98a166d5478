# SPDX-License-Identifier: BSD-3-Clause
"""The faults: FAULTS, the table from fault kind to its weight, the stacks
it applies to and its handler; the timed events that end them; the power
cut and the crash, small state machines run between requests (the Faults
half of Torture)."""

import collections
import heapq
import os
import signal
import time

from .model import MiB, compare_unflushed, merge_ranges
from .ops import MODIFY, Op
from .procs import Fatal, NbdkitDied, now, tail

SYNC_FILE_LAG = 0.3     # the async filter looks at its sync file every 100 ms
STACKS = ("async", "memcache", "full")


class Window:
    """When a fault (or sync mode) was on: a list of [start, end] spans when
    it may have been on, end None while on; and the spans when it surely
    was (from SURE_AT, when it has taken effect, to the end's start)."""

    def __init__(self):
        self.spans = []
        self.sure = []
        self.on = False

    def start(self, t, sure_at=None):
        if not self.on:
            self.spans.append([t, None])
            self.sure.append([t if sure_at is None else sure_at, None])
            self.on = True

    def sure_from(self, t):
        if self.on:
            self.sure[-1][0] = max(self.sure[-1][0], t)

    def end(self, t, linger=0.0):
        if self.on:
            self.spans[-1][1] = t + linger
            if self.sure[-1][1] is None:
                self.sure[-1][1] = t
            self.on = False

    def overlaps(self, t0, t1):
        return any(s <= t1 and (e is None or e >= t0) for s, e in self.spans)

    def covers(self, t0, t1):
        """Surely on from T0 to T1."""
        return any(s <= t0 and (e is None or e >= t1) for s, e in self.sure)

    def last_end(self):
        if self.on:
            return now()
        return self.spans[-1][1] if self.spans else None



class Faults:
    """The fault schedule and the faults' handlers; a half of Torture
    (run.py), whose state it uses."""

    # ---- timed events

    def at(self, delay, fn, token=None):
        self.event_seq += 1
        tok = None
        if token is not None:
            tok = (token, self.tokens.get(token, 0))
        heapq.heappush(self.events, (now() + delay, self.event_seq, tok, fn))

    def cancel(self, token):
        self.tokens[token] = self.tokens.get(token, 0) + 1

    def run_events(self):
        while self.events and self.events[0][0] <= now():
            _, _, tok, fn = heapq.heappop(self.events)
            if tok is not None and self.tokens.get(tok[0], 0) != tok[1]:
                continue
            fn()

    # ---- faults

    def _fault_gap(self):
        return self.fr.randint(self.a.fault_gap // 2, self.a.fault_gap * 3 // 2)

    def count(self, kind, detail=None):
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1
        if detail is not None:
            self.verbose("fault %s %s at op %d" % (kind, detail, self.issued))

    def fault(self):
        if not self.fault_kinds:
            return
        r = self.fr
        kind = r.choices(self.fault_kinds, self.fault_weights)[0]
        dur = r.uniform(0.2, 3.0)
        i = r.randrange(3)
        x = r.random()
        FAULTS[kind].handler(self, dur, i, x)

    def lower_errors_off(self):
        for w, path, tok in ((self.werr, self.nbd.wfail, "werr"),
                             (self.rerr, self.nbd.rfail, "rerr")):
            if w.on:
                os.unlink(path)
                w.end(now())
                self.cancel(tok)

    def _errors(self, w, path, tok, dur):
        if w.on:
            return
        self.count(tok)
        self.verbose("fault %s for %.1f s at op %d" % (tok, dur, self.issued))
        w.start(now())
        open(path, "w").close()

        def off():
            os.unlink(path)
            w.end(now())
        self.at(dur, off, tok)

    def fault_werr(self, dur, i, x):
        self._errors(self.werr, self.nbd.wfail, "werr", dur)

    def fault_rerr(self, dur, i, x):
        self._errors(self.rerr, self.nbd.rfail, "rerr", dur)

    def set_mode(self, sync):
        t = now()
        if sync:
            self.sync_ctl.start(t)
        elif self.sync_ctl.on:
            self.sync_ctl.sure[-1][1] = t       # no longer surely sync
        rc, out = self.nbd.abdctl(self.nbd.actl, "mode",
                                  "sync" if sync else "async")
        if rc != 0:
            self.fail_unexpected("abdctl mode: exit %d: %s" % (rc, out))
        if sync:
            self.sync_ctl.sure_from(now())
        else:
            self.sync_ctl.end(now())

    def fault_mode(self, dur, i, x):
        self.count("mode")
        self.verbose("fault mode %s at op %d"
                     % ("async" if self.sync_ctl.on else "sync", self.issued))
        self.set_mode(not self.sync_ctl.on)

    def fault_syncfile(self, dur, i, x):
        if self.sync_file.on:
            return
        self.count("syncfile", "for %.1f s" % (dur * 2))
        path = self.nbd.syncfile
        self.sync_file.start(now(), sure_at=now() + SYNC_FILE_LAG)
        open(path, "w").close()

        def off():
            os.unlink(path)
            # The watcher polls every 100 ms.
            self.sync_file.end(now(), linger=0.5)
        self.at(dur * 2, off, "syncfile")

    def fault_mc_stop(self, dur, i, x):
        m = self.mcs[i]
        if m.state != "up":
            return
        self.count("mc_stop", "%s for %.1f s" % (m.name, dur))
        m.send(signal.SIGSTOP)
        m.state = "stopped"

        def cont():
            m.send(signal.SIGCONT)
            m.state = "up"
        self.at(dur, cont, "mc%d" % i)

    def fault_mc_kill(self, dur, i, x):
        m = self.mcs[i]
        if m.state != "up":
            return
        self.count("mc_kill", "%s, down %.1f s" % (m.name, dur / 3))
        m.send(signal.SIGKILL)
        m.proc.wait()
        m.state = "down"
        self.at(dur / 3, lambda: m.start(stale=False), "mc%d" % i)

    def fault_mc_stale(self, dur, i, x):
        m = self.mcs[i]
        if m.state != "up":
            return
        self.count("mc_stale", "%s, down %.1f s after saving"
                   % (m.name, dur / 3))
        m.send(signal.SIGUSR1)          # saves its memory and exits
        m.state = "saving"

        def saved():
            if m.proc.poll() is None:
                self.at(0.05, saved, "mc%d" % i)
                return
            m.state = "down"
            self.at(dur / 3, lambda: m.start(stale=True), "mc%d" % i)
        self.at(0.05, saved, "mc%d" % i)

    def fault_disconnect(self, dur, i, x):
        busy = [c for c in self.conns if c.inflight]
        if not busy:
            return
        self.count("disconnect")
        c = busy[int(x * len(busy))]
        mods = sum(op.kind in MODIFY for op in c.inflight.values())
        self.verbose("fault disconnect conn%d (nbdkit connection %d) with %d "
                     "requests in flight (%d modifying) at op %d"
                     % (c.slot, c.cno, len(c.inflight), mods, self.issued))
        self.close_conn(c)
        self.kill_inflight(c, "disconnect")
        self.connect(c)

    def fault_disc(self, dur, i, x):
        busy = [c for c in self.conns if c.inflight and not c.closing]
        if not busy:
            return
        c = busy[int(x * len(busy))]
        self.count("disc", "conn%d (nbdkit connection %d) with %d requests "
                   "in flight" % (c.slot, c.cno, len(c.inflight)))
        c.h.aio_disconnect()
        c.closing = True

    def fault_restart(self, dur, i, x):
        self.count("restart")
        self.lower_errors_off()
        n = len(self.inflight_mods) + len(self.inflight_reads)
        self.verbose("fault restart (SIGTERM) with %d requests in flight at "
                     "op %d" % (n, self.issued))
        image = self.stop_nbdkit(signal.SIGTERM, linger=self.fr.uniform(0, 0.3))
        if "could NOT be written" in tail(self.nbd.log, 50):
            self.fail_unexpected("nbdkit lost data at exit:\n"
                                 + tail(self.nbd.log))
        self.check_image("image after SIGTERM", image, self.model.data,
                         self.model.state, [])
        self.resolve(image)
        self.variant = self._variant()
        self.verbose("restarting nbdkit: %s" % self.variant)
        pos = self.nbd.log_size()
        self.start_nbdkit()
        if self.nbd.replayed_bytes(pos):
            self.fail_unexpected("the store file held data after a "
                                 "SIGTERM:\n" + tail(self.nbd.log))

    def resolve(self, image):
        """After a stop, the image is the truth."""
        self.model.reset(image)
        self.dead = []
        self.through = []

    # ---- the power cut: a small state machine run from issue_some

    def fault_powercut(self, dur, i, x):
        self.count("powercut")
        self.lower_errors_off()
        via = "none"
        if self.nbd.durable:
            via = "store"       # async mode: the flush commits the store
        elif self.nbd.has_async():
            via = "file" if x < 0.5 else "abdctl"
            if via == "abdctl":
                self.set_mode(True)
            else:
                self.cancel("syncfile")
                self.sync_file.start(now(), sure_at=now() + SYNC_FILE_LAG)
                open(self.nbd.syncfile, "w").close()
                deadline = now() + 5
                while (self.nbd.status(self.nbd.actl) or {}).get("mode") != "sync":
                    if now() > deadline:
                        self.fail_unexpected("the sync file did not switch "
                                             "to sync mode within 5 s")
                        break
                    time.sleep(0.02)
        self.pc = {"via": via, "flush_at": self.issued + self.fr.randint(5, 120),
                   "kill_after": self.fr.randint(0, 80), "snap": None,
                   "after": [], "flush": None, "flush_ok": None,
                   "tries": 0, "slot": i % len(self.conns)}
        self.verbose("fault powercut: sync via %s at op %d, flush at op %d"
                     % (via, self.issued, self.pc["flush_at"]))

    def powercut_step(self):
        """Returns True if requests may be issued now."""
        pc = self.pc
        if pc["snap"] is None or pc["flush_ok"] is False:
            if self.issued < pc["flush_at"]:
                return True
            if pc["flush_ok"] is False:
                if "retry_at" not in pc:
                    pc["tries"] += 1
                    pc["retry_at"] = now() + 0.5
                if now() < pc["retry_at"]:
                    return True
                del pc["retry_at"]
                if pc["tries"] > 40:
                    self.fail_unexpected("power cut: 40 flushes failed")
                    self.powercut_end(None)
                    return True
            open_conns = [c for c in self.conns
                          if c.h is not None and not c.closing]
            if not open_conns:
                return True
            c = open_conns[pc["slot"] % len(open_conns)]
            # The flush: snapshot the model; writes in flight now or issued
            # later ("after") may or may not be on the image.
            pc["snap"] = (bytes(self.model.data), bytes(self.model.state))
            pc["after"] = list(self.inflight_mods.values())
            op = Op(-1 - pc["tries"], c.slot, "flush")
            op.pc = True
            op.t0 = now()
            op.cno = c.cno
            pc["flush"] = op
            pc["flush_ok"] = None
            cb = lambda err, op=op: self.done.append((op, err.value)) or 1
            c.h.aio_flush(completion=cb)
            c.inflight[op.id] = op
            return True
        if pc["flush_ok"] is None:
            return True                 # flush in flight
        if "kill_at" not in pc:
            pc["kill_at"] = self.issued + pc["kill_after"]
        if self.issued < pc["kill_at"]:
            return True
        n = len(self.inflight_mods)
        self.verbose("power cut: SIGKILL with %d writes in flight at op %d"
                     % (n, self.issued))
        if self.nbd.durable:
            # The store file is on a disk and stays: the restart writes
            # back what its last commit holds before it serves, and the
            # image is checked then.
            self.stop_nbdkit(signal.SIGKILL)
            self.lower_errors_off()     # or the write-back cannot finish
            pos = self.nbd.log_size()
            self.pc = None
            self.start_nbdkit()
            self.add("powercut.replayed_bytes", self.nbd.replayed_bytes(pos))
            self.pc = pc
            with open(self.nbd.img, "rb") as f:
                image = f.read()
            self.check_powercut(pc, image)
            pc["restarted"] = True
            self.powercut_end(image)
            return False
        image = self.stop_nbdkit(signal.SIGKILL)
        self.nbd.drop_store()
        self.check_powercut(pc, image)
        self.powercut_end(image)
        return False

    def check_powercut(self, pc, image):
        """The image after the cut: what was acknowledged before the flush
        is there; each byte of a request in flight at the flush or issued
        after it holds its flushed content or what such a request wrote."""
        data, state = pc["snap"]
        excl = [(w.off, w.end()) for w in pc["after"]]
        merged = merge_ranges(excl)
        excluded = sum(b - a for a, b in merged)
        self.verbose("power cut: checking %.1f MiB acknowledged before the "
                     "flush, and %.1f MiB written since: old or new"
                     % (max(0, state.count(0) - excluded) / MiB,
                        excluded / MiB))
        what = "image after power cut (%s)" % (
            "async mode, durable store file, after the restart"
            if pc["via"] == "store" else "sync mode, %s" % pc["via"])
        self.totals["powercut.cuts"] = self.totals.get("powercut.cuts", 0) + 1
        if not self.check_image(what + ": data acknowledged before the last "
                                "successful flush", image, data, state, excl):
            return

        def content(w):
            if w.kind == "write":
                return lambda a, b: self.pool[w.ds + a - w.off:
                                              w.ds + b - w.off]
            return lambda a, b: bytes(b - a)
        writes = [(w.off, w.end(), content(w)) for w in pc["after"]]
        nnew = 0
        for lo, hi in merged:
            for off in range(lo, hi, MiB):
                end = min(hi, off + MiB)
                chunk = image[off:end]
                ws = [x for x in writes if x[0] < end and off < x[1]]
                first, nbad, n = compare_unflushed(data, state, off, chunk, ws)
                nnew += n
                if first is not None:
                    self.mismatch(what + ": an unflushed byte holds neither "
                                  "its flushed content nor a later write's",
                                  Op(-1, -1, "image", off, end - off), first,
                                  nbad, chunk, data, state)
                    return
        self.verbose("power cut: %d unflushed bytes held new content" % nnew)
        self.totals["powercut.unflushed_new_bytes"] = \
            self.totals.get("powercut.unflushed_new_bytes", 0) + nnew

    def powercut_end(self, image):
        pc, self.pc = self.pc, None
        if pc["via"] == "file":
            os.unlink(self.nbd.syncfile)
            self.sync_file.end(now(), linger=0.5)
        if image is not None:
            self.resolve(image)
            if pc.get("restarted"):
                return          # running already, on the image checked
            self.variant = self._variant()
            self.start_nbdkit()

    # ---- the crash: SIGKILL in async mode, run from issue_some

    def add(self, counter, n=1):
        self.totals[counter] = self.totals.get(counter, 0) + n

    def fault_crash(self, dur, i, x):
        self.count("crash")
        self.lower_errors_off()
        if self.sync_file.on:
            self.cancel("syncfile")
            os.unlink(self.nbd.syncfile)
            self.sync_file.end(now(), linger=0.5)
        if self.sync_ctl.on:
            self.set_mode(False)
        self.crash = {"phase": "async", "t_async": None,
                      "kill_after": self.fr.randint(10, 120), "kill_at": None,
                      "tries": 0, "flushes": 0, "next_look": 0.0}
        self.verbose("fault crash: async mode at op %d" % self.issued)

    def crash_step(self):
        """The crash fault, one step; returns True if requests may be
        issued now.  Requests go on while it waits, in turn:
          async   the filter says it is in async mode and the sync windows
                  (with their linger) are over: from then on every write is
                  acknowledged from the store;
          drain   no write issued before that is in flight: then abdctl
                  flush puts what sync mode may have written through to the
                  disk on it (the powercut plugin would lose it at the
                  kill; a real disk would not), and the store is empty;
          run     after 10-120 more requests, once the store file holds
                  dirty data and writes are in flight (5 requests at a
                  time, 40 times at most): SIGKILL, restart, check."""
        cr = self.crash
        t = now()
        if cr["phase"] == "async":
            if t < cr["next_look"]:
                return True
            cr["next_look"] = t + 0.05
            ends = [w.last_end() or 0 for w in (self.sync_ctl, self.sync_file)]
            if self.sync_ctl.on or self.sync_file.on or max(ends) > t:
                return True
            st = self.nbd.status(self.nbd.actl) or {}
            if st.get("mode") != "async":
                cr["tries"] += 1
                if cr["tries"] > 100:
                    self.fail_unexpected("crash fault: the filter is in mode "
                                         "%s, not async" % st.get("mode"))
                    self.crash = None
                return True
            cr["phase"], cr["t_async"], cr["tries"] = "drain", now(), 0
            return True
        if cr["phase"] == "drain":
            if any(w.t0 < cr["t_async"] for w in self.inflight_mods.values()):
                return True
            t = now()
            rc, out = self.nbd.abdctl(self.nbd.actl, "flush", "60")
            if rc != 0:
                cr["tries"] += 1
                if cr["tries"] > 5:
                    self.fail_unexpected("crash fault: abdctl flush failed "
                                         "5 times: " + out)
                    self.crash = None
                return True
            self.lower_flushed(t)
            cr["phase"], cr["tries"] = "run", 0
            cr["kill_at"] = self.issued + cr["kill_after"]
            return True
        if self.issued < cr["kill_at"]:
            return True
        st = self.nbd.status(self.nbd.actl) or {}
        dirty = int(st.get("store_file_dirty_bytes", 0))
        if not self.nbd.store:
            dirty = int(st.get("dirty_bytes", 0))
        ready = (st.get("mode") == "async" and dirty > 0 and
                 self.inflight_mods)
        if not ready and cr["tries"] < 40:
            cr["tries"] += 1
            cr["kill_at"] = self.issued + 5
            return True
        if st.get("mode") != "async":
            self.fail_unexpected("crash fault: the filter is in mode %s, "
                                 "not async" % st.get("mode"))
        if self.through:
            # The drain phase's abdctl flush covered sync mode: the check
            # after this kill must not be weakened.
            self.fail_unexpected("crash fault: %d writes acknowledged in "
                                 "sync mode are not known to be on the "
                                 "disk" % len(self.through))
        self.verbose("crash: SIGKILL in async mode with %d dirty bytes, %d "
                     "writes in flight and %d flushes acknowledged since "
                     "the fault, at op %d" % (dirty, len(self.inflight_mods),
                                             cr["flushes"], self.issued))
        self.add("crash.kills")
        self.add("crash.dirty_at_kill", dirty)
        self.add("crash.flushes_acked", cr["flushes"])
        self.stop_nbdkit(signal.SIGKILL)
        self.restart_after_crash("SIGKILL in async mode")
        return False

    def restart_after_crash(self, what):
        """nbdkit is dead and its connections written off: the model holds
        every acknowledged write, the bytes of requests in flight at the
        death are unknown.  Start nbdkit again with the same store file and
        configuration; it writes back what the file holds and flushes the
        disk before it answers the handshake.  Then, with nothing else in
        flight, the image file and a read of everything through NBD must
        equal the model."""
        self.crash = None
        self.dead = []                  # nbdkit finished them all: it died
        self.sync_ctl.end(now())
        self.lower_errors_off()         # or the write-back cannot finish
        through = merge_ranges((w.off, w.end()) for w in self.through)
        self.through = []
        for a, b in through:
            self.model.unknown(a, b - a)
        n = sum(b - a for a, b in through)
        if n:
            self.add("crash.sync_unflushed_bytes", n)
            self.verbose("%d bytes acknowledged in sync mode and maybe not "
                         "flushed to the powercut plugin are unknown" % n)
        if self.pc is not None:
            self.powercut_end(None)
        pos = self.nbd.log_size()
        try:
            self.start_nbdkit()
        except NbdkitDied:
            raise Fatal("nbdkit died again right after its restart:\n"
                        + tail(self.nbd.log))
        replayed = self.nbd.replayed_bytes(pos)
        self.verbose("restarted after %s: %d bytes written back from the "
                     "store file" % (what, replayed))
        with open(self.nbd.img, "rb") as f:
            image = f.read()
        ok = self.check_image("image after %s and the restart" % what, image,
                              self.model.data, self.model.state, [])
        ok = self.read_back("read-back after %s and the restart" % what) \
            and ok
        self.add("crash.checks")
        if replayed:
            self.add("crash.replays")
            self.add("crash.replayed_bytes", replayed)
        if not ok:
            # Go on from what is there, so that one loss is reported once.
            self.add("crash.failed_checks")
            self.resolve(image)
        self.last_progress = now()


# The fault kinds: how often each is chosen (relative weight), the stacks
# it applies to, and its handler, called with the Torture, a duration
# (0.2-3 s), a server index (0-2) and a number in [0, 1).  The order is
# the schedule's: a seed picks the same faults as long as it stays.
Fault = collections.namedtuple("Fault", "weight stacks handler")
FAULTS = {
    "werr":       Fault(2.0, STACKS, Faults.fault_werr),
    "rerr":       Fault(2.0, STACKS, Faults.fault_rerr),
    "disconnect": Fault(1.0, STACKS, Faults.fault_disconnect),
    "disc":       Fault(1.0, STACKS, Faults.fault_disc),
    "restart":    Fault(0.8, STACKS, Faults.fault_restart),
    "powercut":   Fault(0.8, STACKS, Faults.fault_powercut),
    "crash":      Fault(0.8, ("async", "full"), Faults.fault_crash),
    "mode":       Fault(1.5, ("async", "full"), Faults.fault_mode),
    "syncfile":   Fault(1.5, ("async", "full"), Faults.fault_syncfile),
    "mc_stop":    Fault(1.5, ("memcache", "full"), Faults.fault_mc_stop),
    "mc_kill":    Fault(1.0, ("memcache", "full"), Faults.fault_mc_kill),
    "mc_stale":   Fault(1.0, ("memcache", "full"), Faults.fault_mc_stale),
}
