# SPDX-License-Identifier: BSD-3-Clause
"""torture's command line (scripts/torture runs main)."""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import traceback

from .faults import FAULTS, STACKS
from .model import MiB
from .ops import OpGen
from .procs import ABDCTL, ASYNC_FILTER, MEMCACHE_FILTER, POWERCUT_PLUGIN, \
    Fatal, Interrupted
from .run import Torture

HELP = """\
Random I/O with faults against the abd stack, checked byte-exactly
against an in-memory model of the disk.

Stacks (filters from the build tree, nearest the client first; nbdkit's
log, error and delay filters around them, --lower at the bottom):
  async     async filter over a disk
  memcache  memcache filter (3 memcached servers) over a disk
  full      async over memcache over a disk (default)

The disk (--lower):
  powercut  nbdkit-powercut-plugin (from the build tree, or $POWERCUT_PLUGIN)
            over a file: a volatile write cache, so unflushed writes are
            lost when nbdkit exits, as at a power cut.  Each start picks
            unflushed-persist (0, 0.3 or 1: the share of unflushed sectors
            that reach the file anyway) and a seed.  The default for the
            async and full stacks: a SIGTERM then also checks that the
            async filter flushed the disk at exit.
  file      nbdkit's file plugin: unflushed writes survive in the host's
            page cache, so a missing flush goes unnoticed.  The default
            (and the only choice) for the memcache stack, where nothing
            flushes at a stop.

The store file: the async filter runs with async-store-file= (a file in
a temporary directory on /dev/shm, else in torture's own), so that its
dirty data survives a SIGKILL or abort of nbdkit and the next start
writes it back before it serves.  The file is kept across restarts and
removed at a power cut (tmpfs is RAM).  --no-store-file runs without
one: then the crash fault must report mismatches (it shows that the
check works), and an abort of nbdkit is a failure.

Requests: aio pread, pwrite (some with FUA), zero, trim, flush and block
status from --connections connections with up to --depth each in
flight; 1 byte to 2 MiB (and a few zeros/trims of 16-24 MiB), random
alignments, ranges that overlap, over a --size MiB device.  Every read is
compared with the model, except bytes under a write/zero/trim in flight
during the read; every extent said to read as zeros must be zeros in the
model.  At the end everything is read back and its extents checked.

Faults, on a seeded schedule:
  werr, rerr   lower writes (pwrite/zero/trim) or reads fail with EIO
               for a while (error filter trigger files).  Expected and
               accepted: reads failing with EIO while read errors are on;
               writes failing with EIO while lower writes fail in sync
               mode or without the async filter, or partial-block writes
               while lower reads fail (the async filter reads the block
               first); flushes failing with EIO while, or shortly after,
               lower writes failed.  Any other error is a failure.  A
               failed write leaves its range unknown until rewritten.
               (nbdkit 1.32's error filter cannot fail flushes: lower
               flush errors are left to tests/test-async-lower-flush-errors.sh.)
  mode         abdctl mode sync / mode async
  syncfile     the async-sync-file appears for a while
  mc_stop      a memcached server SIGSTOPped for a while, then SIGCONT
  mc_kill      a memcached server SIGKILLed, restarted empty (same port)
  mc_stale     a memcached server stopped keeping its memory (-e FILE,
               SIGUSR1) and restarted with it: stale data
  disconnect   a connection closed abruptly (the handle closed) with
               requests in flight; its writes in flight are unknown until
               rewritten after nbdkit has finished them.  nbdkit 1.32
               itself often aborts on this ("raw_send_socket: Assertion
               `sock >= 0' failed", with or without abd's filters).  That
               abort, and only that one, is handled as a crash (below):
               restart, write-back of the store file, check, go on
               (counted as crash.aborts).  Without the async filter
               (memcache stack) nothing is held back, so the same check
               applies; with the async filter but --no-store-file the
               abort loses acknowledged data and fails the run.
  disc         a connection sends NBD_CMD_DISC with requests in flight;
               replies that come are checked, the rest is unknown
  crash        async and full stacks: lower errors off, async mode
               (abdctl mode async, the sync file removed); once the
               filter says async and no write issued before is in flight,
               abdctl flush (what sync mode wrote through must be on the
               disk: the powercut plugin would lose it at the kill, a real
               disk would not); then 10-120 more requests (writes and
               flushes acknowledged from RAM) and SIGKILL, once the store
               file holds dirty data and writes are in flight.  nbdkit is
               started again with the same store file and configuration;
               it writes the file back and flushes the disk before it
               answers the handshake.  Then, before any new request, the
               image file and a read of the whole device through NBD must
               equal the model of acknowledged writes: nothing is reset
               from the image, only the bytes of requests in flight at the
               kill are unknown (old or new) until rewritten.  The next
               SIGTERM checks the image again.  After an abort (see
               disconnect), which may come in sync mode, the bytes of
               writes acknowledged while sync mode may have been on and
               not followed by a flush surely in sync mode are unknown too
               (with --lower powercut).  Counters: crash.kills,
               crash.aborts, crash.checks (restarts checked),
               crash.failed_checks, crash.replays (checks after a start
               that wrote back data from the store file),
               crash.replayed_bytes, crash.dirty_at_kill
               (store_file_dirty_bytes just before the kill),
               crash.flushes_acked (flushes acknowledged between the fault
               and the kill), crash.sync_unflushed_bytes (made unknown).
  restart      nbdkit stopped with SIGTERM with requests in flight, and
               started again on the same image and servers, sometimes
               with another configuration (async-max-dirty=64K or 8M,
               async-mode=sync, async-writeback-delay=0, async-sync-writes
               rate or hold, async-writers, async-write-size, memcache
               block size, write policy and timeout): the image must
               equal the model (requests in flight at the stop are
               unknown; replies that came after the SIGTERM count)
  powercut     sync mode (abdctl mode sync or the sync file), writes, a
               flush, more writes, then SIGKILL: the image must hold
               every write acknowledged before the last successful flush;
               each byte written by a request in flight at the flush or
               issued after it must hold either its flushed content or
               what one of those requests wrote there (zeros for a zero
               or trim).  The store file is removed before the restart:
               a power cut loses tmpfs too.

DURABILITY with --flush-store (async-flush=store, the store file on a
disk): the power cut does not switch to sync mode.  In async mode, writes,
a flush (a commit of the store file), more writes, SIGKILL; the store
file is kept (only what commits wrote is in it: its map is private), and
nbdkit restarts with it, writes it back and flushes the disk before it
serves.  The image is then checked as after a sync-mode power cut.  The
crash and disconnect faults are left out: they expect every acknowledged
write after a SIGKILL or an abort, and a durable store keeps the flushed
ones only.  (This kills the process, not the host: the page cache keeps
every commit.  tests/test-async-durable-powercut.sh cuts the store
file's disk too.)

DURABILITY: only sync mode is checked against a power cut.  Async mode
makes no such promise: it acknowledges flushes from RAM, and a power cut
loses everything dirty, including flushed data.  The power-cut fault
therefore always switches to sync mode first.  A SIGKILL or abort of
nbdkit in async mode loses nothing acknowledged with the store file
(the crash fault), everything dirty without it.

The last line is
  torture: OPS ops, FAULTS faults (kind=N, ...), MISMATCHES mismatches, seed S
The exit status is 1 on any mismatch, unexpected error, stall or crash
(nbdkit dying unexpectedly: any death but the crash fault's SIGKILL and
the nbdkit 1.32 abort above), 0 otherwise, 2 for usage errors.  Every
process it starts is stopped at exit, also on failure or Ctrl-C; the
temporary directory is removed unless --keep.
"""



def list_ops(args):
    g = OpGen(args.seed, args.size * MiB, args.connections)
    for _ in range(args.list_ops):
        print(g.next())


def main():
    p = argparse.ArgumentParser(
        prog="torture", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, required=True,
                   help="how long to issue requests")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--stack", choices=STACKS, default="full")
    p.add_argument("--lower", choices=("powercut", "file"), default=None,
                   help="the disk under the stack (default powercut for the "
                   "async and full stacks, file for memcache)")
    p.add_argument("--connections", type=int, default=4, metavar="K")
    p.add_argument("--depth", type=int, default=16,
                   help="requests in flight per connection (default 16)")
    p.add_argument("--size", type=int, default=64, metavar="MIB",
                   help="device size in MiB (default 64)")
    p.add_argument("--tiny", action="store_true",
                   help="always async-max-dirty=64K")
    p.add_argument("--fault-gap", type=int, default=150, metavar="OPS",
                   help="mean requests between faults (default 150)")
    p.add_argument("--faults", default=None,
                   help="comma-separated fault kinds to use (default all "
                   "that apply; 'none' for none): " + ",".join(FAULTS))
    p.add_argument("--max-ops", type=int, default=0,
                   help="stop issuing after this many requests")
    p.add_argument("--list-ops", type=int, default=0, metavar="N",
                   help="print the first N requests of the list and exit")
    p.add_argument("--stall", type=int, default=90, metavar="SECS",
                   help="fail when no request completes for SECS (default 90)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (logs, ops.log, image)")
    p.add_argument("--delay-writes", action="store_true",
                   help="delay lower writes, zeros and trims by 3 ms too "
                   "(the delay filter fails them once nbdkit is shutting "
                   "down, so the async filter cannot drain at SIGTERM)")
    p.add_argument("--no-store-file", action="store_true",
                   help="run the async filter without async-store-file: "
                   "a crash then loses acknowledged data (the crash fault "
                   "must report mismatches)")
    p.add_argument("--flush-store", action="store_true",
                   help="async-flush=store: the store file on a disk "
                   "(torture's own directory), flushes durable in it; the "
                   "power cut stays in async mode and keeps the file (see "
                   "DURABILITY)")
    p.add_argument("--break-model", action="store_true",
                   help="leave every 100th write out of the model on "
                   "purpose (shows that the checks catch it)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    if args.flush_store and (args.no_store_file or args.stack == "memcache"):
        p.error("--flush-store needs the async filter and a store file")
    if args.faults is not None:
        args.faults = [] if args.faults == "none" else args.faults.split(",")
        bad = [k for k in args.faults if k not in FAULTS]
        if bad:
            p.error("unknown fault kind(s): " + ",".join(bad))
    if args.lower is None:
        args.lower = "file" if args.stack == "memcache" else "powercut"
    if args.lower == "powercut" and args.stack == "memcache":
        p.error("--lower powercut needs the async filter: with the memcache "
                "stack nothing flushes the disk when nbdkit stops")
    if args.size < 32 or args.connections < 1 or args.depth < 1:
        p.error("--size must be at least 32, --connections and --depth at least 1")
    if args.list_ops:
        list_ops(args)
        return 0

    needed = [ABDCTL]
    if args.stack in ("async", "full"):
        needed.append(ASYNC_FILTER)
    if args.stack in ("memcache", "full"):
        needed.append(MEMCACHE_FILTER)
    if args.lower == "powercut":
        needed.append(POWERCUT_PLUGIN)
    for f in needed:
        if not os.path.exists(f):
            print("torture: %s is not built" % f, file=sys.stderr)
            return 2
    for c in ["nbdkit"] + (["memcached"] if args.stack != "async" else []):
        if shutil.which(c) is None:
            print("torture: %s is not installed" % c, file=sys.stderr)
            return 2

    def on_signal(sig, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        raise Interrupted(sig)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    tmp = tempfile.mkdtemp(prefix="abd-torture.", dir="/var/tmp")
    # The store file on a tmpfs, as the man page says: RAM, not disk
    # writes.  Its own directory, removed with tmp.
    store_dir = store = None
    if args.stack != "memcache" and not args.no_store_file:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tmp
        if args.flush_store:
            shm = tmp           # a disk: what async-flush=store is for
        store_dir = tempfile.mkdtemp(prefix="abd-torture.", dir=shm)
        store = store_dir + "/async.store"
    t = None
    crashed = False
    status = 0
    try:
        t = Torture(args, tmp, store)
        print("torture: seed %d, stack %s over %s, %d s, temporary "
              "directory %s, store file %s"
              % (args.seed, args.stack, args.lower, args.seconds, tmp,
                 store or "none"), flush=True)
        t.start()
        t.run()
    except Fatal as e:
        crashed = True
        print("torture: FATAL: %s" % e, flush=True)
    except Interrupted as e:
        sig = e.args[0]
        print("torture: interrupted by %s" % signal.Signals(sig).name,
              flush=True)
        status = 128 + sig
    except Exception:
        crashed = True
        traceback.print_exc()
        sys.stdout.flush()
    finally:
        try:
            if t is not None:
                t.cleanup()
        finally:
            if args.keep:
                print("torture: kept %s%s" % (tmp, " and " + store_dir
                                              if store_dir else ""),
                      flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
                if store_dir:
                    shutil.rmtree(store_dir, ignore_errors=True)
    if t is None:
        return 1
    t.summary(crashed)
    if status:
        return status
    return 1 if (t.mismatches or t.unexpected or t.crashes or crashed) else 0
