# SPDX-License-Identifier: BSD-3-Clause
"""One torture run: the state, nbdkit and its connections, the main loop,
the final checks and the summary."""

import errno
import os
import random
import signal
import subprocess
import time

import nbd

from abdtest.procs import stop as stop_process

from .faults import FAULTS, Faults, Window
from .model import BLOCK, EXACT, MAX_IO, MiB, Model, POOL, UNKNOWN, WEAK, \
    compare
from .ops import MODIFY, Buffers, Conn, DeadRange, Op, OpGen, Requests
from .procs import Fatal, Memcached, Nbdkit, NbdkitDied, now, tail


class Torture(Requests, Faults):
    """One run: the requests (Requests, ops.py) and the faults (Faults,
    faults.py) share this state."""

    def __init__(self, args, tmp, store):
        self.a = args
        self.tmp = tmp
        self.t_start = now()
        self.size = args.size * MiB
        self.model = Model(self.size)
        self.gen = OpGen(args.seed, self.size, args.connections)
        self.fr = random.Random("%d/faults" % args.seed)
        # Its own generator: the fault schedule stays what it was with the
        # file plugin.
        self.lr = random.Random("%d/lower" % args.seed)
        self.pool = random.Random("%d/data" % args.seed).randbytes(POOL)
        self.bufs = Buffers(self.pool)
        kinds = [k for k, f in FAULTS.items() if args.stack in f.stacks]
        if args.flush_store:
            # They expect every acknowledged write after a SIGKILL or an
            # abort; a durable store keeps the flushed ones (--help).
            kinds = [k for k in kinds if k not in ("crash", "disconnect")]
        if args.faults is not None:
            kinds = [k for k in kinds if k in args.faults]
        self.fault_kinds = kinds
        self.fault_weights = [FAULTS[k].weight for k in kinds]
        self.fault_counts = {}
        self.next_fault_at = self._fault_gap()

        self.nbd = Nbdkit(tmp, args.stack, args.lower, self.size,
                          os.environ.get("ABD_SANITIZER_PRELOAD") or None,
                          args.delay_writes, store, args.flush_store)
        self.mcs = []
        self.conns = [Conn(i) for i in range(args.connections)]
        self.conn_counter = 0
        self.inflight_mods = {}         # op id -> Op
        self.inflight_reads = {}
        self.done = []                  # (op, errno) from callbacks
        self.history = []               # modifying ops, for reports
        self.dead = []                  # DeadRange
        self.reqlog_pos = 0
        self.issued = 0
        self.completed = 0
        self.next_op = None
        self.last_progress = now()
        self.events = []                # heap of (time, seq, fn)
        self.event_seq = 0
        self.tokens = {}                # cancels timed fault ends
        self.stopping = False           # nbdkit is being stopped
        self.blocked = {}               # why the next request waited
        self.crashes = 0                # nbdkit died on its own
        self.known_crashes = 0          # ... of the nbdkit 1.32 close bug
        self.inflight_sum = 0

        self.werr = Window()
        self.rerr = Window()
        self.sync_ctl = Window()
        self.sync_file = Window()
        self.pc = None                  # power cut in progress
        self.crash = None               # crash fault in progress
        # Writes acknowledged while sync mode may have been on: they may
        # have gone through to the powercut plugin without a lower flush
        # since, and so are lost if nbdkit dies (a real disk would keep
        # them: its cache outlives nbdkit).  Unknown after an abort.
        self.through = []
        self.variant = self._variant(base=True)

        self.mismatches = 0
        self.unexpected = 0
        self.expected_errors = {}
        self.totals = {}
        self.oplog = open(tmp + "/ops.log", "w")
        self.broke_model = 0

    # ---- reporting

    def ts(self, t=None):
        return "%.3f" % ((t if t is not None else now()) - self.t_start)

    def say(self, msg):
        print("torture: [%s] %s" % (self.ts(), msg), flush=True)

    def verbose(self, msg):
        """Faults: always in ops.log, on stdout with --verbose."""
        self.oplog.write("%s FAULT %s\n" % (self.ts(), msg))
        if self.a.verbose:
            self.say(msg)

    def fail_unexpected(self, msg):
        self.unexpected += 1
        if self.unexpected <= 20:
            self.say("UNEXPECTED: " + msg)

    def mismatch(self, what, op, pos, nbad, got, exp_data, exp_state):
        self.mismatches += 1
        if self.mismatches > 10:
            return
        rel = pos - op.off
        g = bytes(got[rel:rel + 8])
        e = bytes(exp_data[pos:pos + 8])
        states = {EXACT: "exact", WEAK: "weak (trimmed)", UNKNOWN: "unknown"}
        self.say("MISMATCH %s: byte %d (block %d +%d): expected %s got %s "
                 "(state %s), %d bad bytes"
                 % (what, pos, pos // BLOCK, pos % BLOCK, e.hex(), g.hex(),
                    states[exp_state[pos]], nbad))
        self.say("  the bad bytes look like: %s"
                 % self.whose(pos, bytes(got[rel:rel + 16])))
        for h in [h for h in self.history if h.off <= pos < h.end()][-6:]:
            self.say("  history of byte %d: %s issued %s done %s %s"
                     % (pos, h, self.ts(h.t0),
                        self.ts(h.t1) if h.t1 else "-",
                        "dead" if h.dead else
                        "ok" if h.err == 0 else
                        errno.errorcode.get(h.err, h.err) if h.err else
                        "in flight"))

    def whose(self, pos, g):
        if g == bytes(len(g)):
            return "zeros"
        found = []
        for h in self.history:
            if h.kind == "write" and h.off <= pos < h.end():
                k = h.ds + (pos - h.off)
                m = min(len(g), h.end() - pos)
                if self.pool[k:k + m] == g[:m]:
                    found.append(str(h))
        return ", ".join(found[-3:]) or "no write of this byte"

    # ---- nbdkit and connections

    def servers(self):
        return ",".join("127.0.0.1:%d" % m.port for m in self.mcs)

    def _variant(self, base=False):
        v = {"max_dirty": None, "mode": "async", "wb_delay": None,
             "sync_writes": None, "writers": None, "write_size": None,
             "mc_block": "4K", "mc_policy": "update", "mc_timeout": None,
             "pc_persist": self.lr.choice(["0", "0", "0.3", "1"]),
             "pc_seed": self.lr.randrange(1 << 32)}
        if self.a.tiny:
            v["max_dirty"] = "64K"
        if self.a.flush_store:
            # Data stays in the store for a while: a power cut then finds
            # flushed data that only the store file's commits hold.
            v["wb_delay"] = 2000
        if base:
            return v
        r = self.fr
        x = r.random()
        if x < 0.30:
            v["max_dirty"] = "64K"
        elif x < 0.45:
            v["max_dirty"] = "8M"
        if r.random() < 0.2:
            v["mode"] = "sync"
        if r.random() < 0.3:
            v["wb_delay"] = 0
        v["sync_writes"] = r.choice([None, None, "rate", "hold"])
        v["writers"] = r.choice([None, None, 1, 3])
        v["write_size"] = r.choice([None, None, "4K", "1M"])
        v["mc_block"] = r.choice(["4K", "4K", "64K", "1K"])
        v["mc_policy"] = r.choice(["update", "update", "invalidate"])
        v["mc_timeout"] = r.choice([None, None, 1, 50])
        if self.a.tiny:
            v["max_dirty"] = "64K"
        return v

    def start_nbdkit(self):
        self.nbd.start(self.variant, self.servers())
        self.reqlog_pos = 0
        self.conn_counter = 0
        if self.nbd.has_async() and self.variant["mode"] == "sync":
            self.sync_ctl.start(now())
        for c in self.conns:
            self.connect(c)

    def connect(self, c):
        """Connect C.  nbdkit answers the handshake only once the async
        filter has written back what its store file held: up to a minute
        here (its async-exit-timeout=30 counts from the last progress)."""
        err = None
        for attempt in range(5):
            h = nbd.NBD()
            h.set_handle_name("torture%d" % c.slot)
            h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
            try:
                h.aio_connect_unix(self.nbd.sock)
                deadline = now() + 180
                while h.aio_is_connecting():
                    if now() > deadline:
                        raise Fatal("nbdkit did not answer the handshake "
                                    "within 180 s:\n" + tail(self.nbd.log))
                    if not self.nbd.alive():
                        raise NbdkitDied()
                    h.poll(1000)
                if h.aio_is_ready():
                    break
                err = "the handshake failed"
            except nbd.Error as e:
                err = e
            time.sleep(0.2)
            if not self.nbd.alive():
                raise NbdkitDied()
        else:
            raise Fatal("cannot connect to nbdkit: %s" % err)
        self.conn_counter += 1
        c.h, c.cno = h, self.conn_counter
        c.closing = False
        if h.get_size() != self.size:
            raise Fatal("export size %d, expected %d"
                        % (h.get_size(), self.size))

    def close_conn(self, c):
        """Close C's handle at once, with whatever is in flight."""
        h, c.h = c.h, None
        if h is not None:
            try:
                nbd.libnbdmod.close(h._o)
                del h._o
            except AttributeError:
                pass
        for op in c.orphans:
            self.bufs.release(op)
        c.orphans = []

    def kill_inflight(self, c, why):
        """C's requests in flight will never be seen to complete: writes
        become unknown (until rewritten after connection CNO is finished,
        if DEAD_RANGE)."""
        for op in list(c.inflight.values()):
            if op.pc and self.pc is not None and op is self.pc["flush"]:
                self.pc["flush"] = None
                self.pc["flush_ok"] = False
            op.dead = True
            op.t1 = now()
            if c.h is None:
                self.bufs.release(op)
            else:
                c.orphans.append(op)
            self.inflight_mods.pop(op.id, None)
            self.inflight_reads.pop(op.id, None)
            if op.kind in MODIFY:
                self.model.unknown(op.off, op.n)
                if why == "disconnect":
                    self.dead.append(DeadRange(op.off, op.end(), c.cno))
            self.oplog.write("%s %d dead (%s)\n" % (self.ts(), op.id, why))
        c.inflight.clear()

    def stop_nbdkit(self, sig, linger=0.0):
        """Stop nbdkit with SIG.  With SIGTERM, replies that arrive within
        LINGER seconds are taken (acknowledged writes must be on the image);
        then the connections are closed (nbdkit 1.32 waits for its clients
        to go before it exits) and what is still in flight is written off.
        Returns the image."""
        if self.nbd.alive():
            self.collect_stats()
        proc = self.nbd.proc
        self.stopping = True
        if sig == signal.SIGKILL:
            proc.kill()
            proc.wait()
        else:
            proc.send_signal(sig)
            deadline = now() + linger
            while now() < deadline and (self.inflight_mods or
                                        self.inflight_reads):
                self.poll(0.01)
                self.reap()
            # Not an abrupt close: nbdkit 1.32 aborts on that when
            # replies are pending (see --help).
            for c in self.conns:
                if c.h is not None and not c.closing:
                    try:
                        c.h.aio_disconnect()
                    except nbd.Error:
                        pass
                    c.closing = True
            deadline = now() + 60
            while now() < deadline and proc.poll() is None and any(
                    c.h is not None and not c.h.aio_is_closed() and
                    not c.h.aio_is_dead() for c in self.conns):
                self.poll(0.01)
                self.reap()
        for c in self.conns:
            self.kill_inflight(c, "stop")
            self.close_conn(c)
        self.done.clear()
        self.stopping = False
        if sig != signal.SIGKILL:
            try:
                rc = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise Fatal("nbdkit did not exit within 120 s of SIGTERM")
            if rc != 0:
                self.fail_unexpected("nbdkit exited with status %d after "
                                     "SIGTERM:\n%s" % (rc, tail(self.nbd.log)))
        for c in self.conns:
            self.close_conn(c)
        self.sync_ctl.end(now())
        with open(self.nbd.img, "rb") as f:
            image = f.read()
        if len(image) != self.size:
            raise Fatal("the image is %d bytes, expected %d"
                        % (len(image), self.size))
        return image

    def check_image(self, what, image, data, state, excl):
        for off in range(0, self.size, 4 * MiB):
            chunk = image[off:off + 4 * MiB]
            bad = compare(data, state, off, chunk, excl)
            if bad:
                pos, nbad = bad
                fake = Op(-1, -1, "image", off, len(chunk))
                self.mismatch(what, fake, pos, nbad, chunk, data, state)
                return False
        return True

    def collect_stats(self):
        fields = {"async": ["written_back_bytes", "lower_write_errors",
                            "space_waits", "lower_flushes"],
                  "memcache": ["hits", "misses", "fills", "skipped_down",
                               "format_mismatches", "auth_failures",
                               "mass_invalidations"]}
        for name, ctl, want in (("async", self.nbd.actl, self.nbd.has_async()),
                                ("memcache", self.nbd.mctl,
                                 self.nbd.has_memcache())):
            if not want:
                continue
            st = self.nbd.status(ctl)
            if st is None:
                self.fail_unexpected("abdctl %s status failed" % name)
                continue
            for f in fields[name]:
                k = "%s.%s" % (name, f)
                self.totals[k] = self.totals.get(k, 0) + int(st.get(f, 0))

    # ---- the main loop

    def start(self):
        if self.nbd.has_memcache():
            for i in range(3):
                m = Memcached(self.tmp, i)
                m.start()
                self.mcs.append(m)
        self.start_nbdkit()

    def step(self, issue=True):
        try:
            self._step(issue)
        except NbdkitDied:
            self.crashed()

    def _step(self, issue):
        self.run_events()
        if not self.nbd.alive():
            raise NbdkitDied()
        if issue:
            self.issue_some()
        timeout = 0.02
        if self.events:
            timeout = max(0.0, min(timeout, self.events[0][0] - now()))
        self.poll(timeout)
        self.reap()
        for c in self.conns:
            if c.closing and (c.h.aio_is_closed() or c.h.aio_is_dead()):
                self.kill_inflight(c, "disconnect")
                self.close_conn(c)
                if self.nbd.alive():
                    self.connect(c)
        self.watch_disconnects()
        if now() - self.last_progress > self.a.stall:
            self.stall()

    def crashed(self):
        """nbdkit died on its own.  The nbdkit 1.32 abort on a client's
        abrupt close (see --help, disconnect) is handled like the crash
        fault when it can cost nothing: with the store file, or without the
        async filter (nothing held back).  Any other death is a failure:
        the run goes on from the image after the restart (and after the
        write-back of the store file)."""
        rc = self.nbd.proc.returncode
        log = tail(self.nbd.log, 8)
        # Anywhere in this process's log: other threads may log after the
        # assertion until the abort ends the process.
        known = ("raw_send_socket: Assertion `sock >= 0' failed"
                 in self.nbd.log_since_start())
        handled = known and (self.nbd.store or not self.nbd.has_async())
        if handled:
            self.add("crash.aborts")
            self.verbose("nbdkit aborted on a client's abrupt close (the "
                         "nbdkit 1.32 bug), status %s: a crash" % rc)
        else:
            self.crashes += 1
            self.say("CRASH: nbdkit died (status %s)%s:\n%s" % (
                rc, " -- the nbdkit 1.32 bug: a client closing its "
                "connection with requests in flight aborts nbdkit, and "
                "there is no store file" if known else "", log))
            if known:
                self.known_crashes += 1
        self.stopping = True
        for c in self.conns:
            self.kill_inflight(c, "crash")
            self.close_conn(c)
        self.done.clear()
        self.stopping = False
        if handled:
            self.restart_after_crash("the abort")
            return
        self.crash = None
        self.sync_ctl.end(now())
        self.lower_errors_off()
        if self.pc is not None:
            self.powercut_end(None)
        try:
            self.start_nbdkit()
        except NbdkitDied:
            raise Fatal("nbdkit died again right after its restart:\n"
                        + tail(self.nbd.log))
        with open(self.nbd.img, "rb") as f:
            self.resolve(f.read())

    def stall(self):
        st = ""
        if self.nbd.has_async():
            st = self.nbd.abdctl(self.nbd.actl, "status")[1]
        waiting = sorted(self.inflight_mods.values(), key=lambda o: o.t0)[:5]
        raise Fatal("no request completed for %d s (next: %s; oldest in "
                    "flight: %s)\n%s" % (self.a.stall, self.next_op,
                                         ", ".join(map(str, waiting)), st))

    def run(self):
        deadline = self.t_start + self.a.seconds
        while now() < deadline:
            if self.a.max_ops and self.issued >= self.a.max_ops and \
                    self.pc is None:
                break
            self.step()
        self.finish()

    def finish(self):
        # Faults off, power cut abandoned, everything in flight completes.
        self.lower_errors_off()
        for m in self.mcs:
            if m.state == "stopped":
                m.send(signal.SIGCONT)
                m.state = "up"
        for i in range(len(self.mcs)):
            self.cancel("mc%d" % i)
        if self.pc is not None:
            if self.pc["flush"] is not None:
                self.pc["flush_ok"] = None
            self.pc = None
        self.crash = None
        self.last_progress = now()
        while self.inflight_mods or self.inflight_reads or \
                any(c.inflight for c in self.conns):
            self.step(issue=False)
        # Read everything back through nbdkit, and the extents of all of it.
        self.read_back("final read-back")
        c = self.conns[0]
        for off in range(0, self.size, MAX_IO * 8):
            op = Op(-1, 0, "extents", off, min(MAX_IO * 8, self.size - off))
            op.ext, op.excl = [], []
            op.t0 = now()
            c.h.block_status(op.n, op.off,
                             lambda ctx, o, e, err, op=op:
                             op.ext.append((ctx, o, list(e))) or 0)
            op.t1 = now()
            self.done_extents(op, 0)
        image = self.stop_nbdkit(signal.SIGTERM)
        if "could NOT be written" in tail(self.nbd.log, 50):
            self.fail_unexpected("nbdkit lost data at exit")
        self.check_image("image after the final SIGTERM", image,
                         self.model.data, self.model.state, [])

    def summary(self, crashed):
        faults = sum(self.fault_counts.values())
        kinds = ", ".join("%s=%d" % kv for kv in sorted(self.fault_counts.items()))
        exp = ", ".join("%s=%d" % kv for kv in sorted(self.expected_errors.items()))
        print("torture: stack %s, %d connections x depth %d, %d MiB, %.0f s, "
              "%d completed, %d nbdkit starts"
              % (self.a.stack, self.a.connections, self.a.depth, self.a.size,
                 now() - self.t_start, self.completed, self.nbd.starts))
        print("torture: mean requests in flight at issue %.1f; waits: %s"
              % (self.inflight_sum / max(1, self.issued),
                 ", ".join("%s=%d" % kv for kv in sorted(self.blocked.items()))
                 or "none"))
        print("torture: expected errors: %s" % (exp or "none"))
        if self.totals:
            print("torture: counters: %s" % ", ".join(
                "%s=%d" % kv for kv in sorted(self.totals.items())))
        print("torture: %d unexpected errors, %d nbdkit crashes%s%s"
              % (self.unexpected, self.crashes,
                 " (%d of them the nbdkit 1.32 close bug)" % self.known_crashes
                 if self.known_crashes else "",
                 ", run aborted" if crashed else ""))
        print("torture: %d ops, %d faults (%s), %d mismatches, seed %d"
              % (self.issued, faults, kinds or "none", self.mismatches,
                 self.a.seed), flush=True)

    def cleanup(self):
        for c in self.conns:
            self.close_conn(c)
        for p in (self.nbd.wfail, self.nbd.rfail):
            if os.path.exists(p):
                os.unlink(p)
        for m in self.mcs:
            if m.proc is not None and m.proc.poll() is None:
                os.kill(m.proc.pid, signal.SIGCONT)
        if self.nbd.proc is not None:
            stop_process(self.nbd.proc, timeout=60)
        for m in self.mcs:
            if m.proc is not None:
                stop_process(m.proc, timeout=5)
        self.oplog.close()
