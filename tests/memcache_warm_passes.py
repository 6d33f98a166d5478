# SPDX-License-Identifier: BSD-3-Clause
"""The read cache stays warm on default settings (issue #20).

Each round, fresh: three plain memcached servers (-m 256, free loopback
ports), nbdkit with the memcache filter on its defaults (no
memcache-timeout) over file + delay-read=1ms, a 64 MiB image.  One cold
pass, then warm passes; a pass reads every 64 KiB chunk once, in random
order (a working set: memcache-sequential-cutoff, 4M by default, does not
store a sequential stream past 4 MiB, and the cold pass must store every
block), 16 requests in flight, and checks every byte.  A warm pass's hit
ratio is what memcached itself says, as in issue #20: the sum of the
three servers' get_hits deltas over the 16,384 blocks.  The filter's own
count (its hits: blocks it served from memcached) is printed beside it;
it is lower by the blocks of lookups that timed out (the answer came,
but after memcache-timeout without progress: those blocks were read
from the lower device), which only a loaded machine causes.  Rounds run on an idle machine and with one busy CPU
beside (a shell loop started and killed by PID).

With --abd-run PATH, the passes run on the stack scripts/abd-run starts
on its defaults instead (async over memcache over the file plugin, no
delay, one memcached on a Unix socket), over the same 64 MiB image.

  python3 tests/memcache_warm_passes.py [--rounds N] [--warm N]
      [--loads idle,busy] [--min-ratio 0.99] [--floor 0.95] [--no-assert]
      [--abd-run scripts/abd-run]

Exits 1 if the median warm pass hit less than --min-ratio of its blocks
or any pass less than --floor (unless --no-assert), 2 on a data
mismatch or a setup failure.
"""

import argparse
import os
import random
import statistics
import signal
import subprocess
import sys
import tempfile
import time

import nbd

from abdtest import control, procs

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("abs_top_builddir", TOP)
FILTER = os.environ.get("MEMCACHE_FILTER") or os.path.join(
    BUILD, "filters/memcache/.libs/nbdkit-memcache-filter.so")
SIZE = 64 * 1024 * 1024
CHUNK = 64 * 1024
BS = 4096
DEPTH = 16


def mc_stats(port):
    """memcached's own `stats`, {name: int} (numeric fields only); PORT is
    a loopback port or the path of a Unix socket."""
    import socket
    if isinstance(port, str):
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(10)
        conn.connect(port)
    else:
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    with conn as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            b = s.recv(65536)
            if not b:
                raise RuntimeError("memcached %d closed the connection" % port)
            data += b
    out = {}
    for line in data.decode().splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == "STAT":
            try:
                out[f[1]] = int(f[2])
            except ValueError:
                pass
    return out


def get_hits(ports):
    return sum(mc_stats(p)["get_hits"] for p in ports)


def read_pass(uri, image, rnd):
    """Read every chunk once in random order, DEPTH in flight; every
    byte must equal IMAGE.  Returns the seconds it took."""
    h = nbd.NBD()
    h.connect_uri(uri)
    order = list(range(0, SIZE, CHUNK))
    rnd.shuffle(order)
    pending = {}
    start = time.monotonic()
    while order or pending:
        while order and len(pending) < DEPTH:
            off = order.pop()
            buf = nbd.Buffer(CHUNK)
            pending[h.aio_pread(buf, off)] = (off, buf)
        h.poll(-1)
        for cookie in [c for c in pending if h.aio_command_completed(c)]:
            off, buf = pending.pop(cookie)
            if buf.to_bytearray() != image[off:off + CHUNK]:
                raise AssertionError("chunk at %d differs from the image"
                                     % off)
    took = time.monotonic() - start
    h.shutdown()
    return took


def filled(ctl, timeout=60):
    """Until the filter has sent (or dropped) every queued fill."""
    procs.wait_for(lambda: control.field(ctl, "fills_queued") == 0,
                   timeout, "fills still queued")


def warm_passes(uri, ctl, ports, image, nwarm, busy, rnd):
    """The cold pass, then NWARM warm passes; returns [(memcached's hit
    ratio, the filter's)] of the warm ones.  With BUSY, a shell loop
    keeps one CPU busy meanwhile."""
    hog = None
    try:
        if busy:
            hog = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        read_pass(uri, image, rnd)
        filled(ctl)
        # In random order the passes are a working set, which the default
        # memcache-sequential-cutoff (4M) stores whole; read in order, the
        # image would be a scan, and not stored past its first 4 MiB.
        bypassed = control.status_json(ctl).get("seq_bypass_blocks", 0)
        if bypassed:
            raise AssertionError("the cold pass, in random order, was taken "
                                 "for a sequential stream: %d blocks not "
                                 "stored" % bypassed)
        ratios = []
        for _ in range(nwarm):
            before = get_hits(ports)
            st0 = control.status_json(ctl)
            took = read_pass(uri, image, rnd)
            hits = get_hits(ports) - before
            st1 = control.status_json(ctl)
            filled(ctl)
            ratio = hits / (SIZE // BS)
            ratios.append((ratio, (st1["hits"] - st0["hits"]) / (SIZE // BS)))
            d = {k: st1[k] - st0[k] for k in
                 ("hits", "misses", "skipped_down", "timeouts", "errors",
                  "format_mismatches", "auth_failures", "fills_dropped")}
            items = [mc_stats(p) for p in ports]
            print("  warm pass: %5.1f%% (%d get_hits) in %.2f s; filter: %s; "
                  "states %s; memcached items %d, evictions %d" % (
                      100 * ratio, hits, took, d,
                      [s["state"] for s in st1["servers"].values()],
                      sum(m["curr_items"] for m in items),
                      sum(m["evictions"] for m in items)), flush=True)
        return ratios
    finally:
        if hog:
            hog.kill()
            hog.wait()


def abd_run_round(abd_run, tmp, image_path, image, nwarm, busy, rnd):
    """The same passes on scripts/abd-run's stack as it runs by default
    (async over memcache over the file, one memcached on a Unix socket),
    over IMAGE_PATH, in a runtime directory of its own; stopped with
    SIGTERM, which drains it and stops its memcached."""
    d = tmp + "/abd"
    log = tmp + "/nbdkit.log"
    if os.path.exists(log):
        os.unlink(log)
    env = dict(os.environ, ABD_DIR=d)
    run = procs.spawn([abd_run, "--image", image_path], log, env=env)
    pids = []
    try:
        def serving():
            if run.poll() is not None:
                raise RuntimeError("abd-run exited: %d" % run.returncode)
            with open(log) as f:
                return "running; press Ctrl-C" in f.read()
        procs.wait_for(serving, 600, "abd-run serving")
        with open(log) as f:
            text = f.read()
        import re
        pids = [int(p) for p in
                re.findall(r"^abd is running: nbdkit PID (\d+)$", text, re.M) +
                re.findall(r"^abd-run: memcached PID (\d+) ", text, re.M)]
        sock = re.search(r"^abd-run: memcached PID \d+ on (.*) \(user ",
                         text, re.M).group(1)
        return warm_passes("nbd+unix:///?socket=" + d + "/abd.sock",
                           d + "/memcache.ctl", [sock], image, nwarm, busy,
                           rnd)
    finally:
        if procs.stop(run, timeout=120) is None:
            print("abd-run did not stop on SIGTERM within 120 s")
        for pid in pids:                # (killed with abd-run, if not yet)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def one_round(tmp, image_path, image, nwarm, busy, rnd):
    servers = []
    nbdkit = None
    try:
        ports = []
        for i in range(3):
            port = procs.free_port()
            argv = ["memcached", "-l", "127.0.0.1", "-p", str(port),
                    "-U", "0", "-m", "256"]
            if os.geteuid() == 0:
                argv += ["-u", "root"]
            p = procs.spawn(argv, "%s/memcached-%d.log" % (tmp, port))
            servers.append(p)
            procs.wait_for(lambda: procs.port_open(port), 10,
                           "memcached on port %d" % port)
            ports.append(port)
        sock, ctl = tmp + "/nbd.sock", tmp + "/ctl.sock"
        for f in (sock, ctl, tmp + "/nbdkit.log"):
            if os.path.exists(f):
                os.unlink(f)
        argv = ["nbdkit", "-f", "-U", sock] + \
            (["-v"] if os.environ.get("WARM_PASSES_VERBOSE") else []) + \
            ["--filter=" + FILTER,
                "--filter=delay", "file", image_path, "delay-read=1ms",
                "memcache-servers=" + ",".join("127.0.0.1:%d" % p
                                              for p in ports),
                "memcache-id=warm-default", "memcache-control=" + ctl]
        if os.environ.get("MEMCACHE_PROTOCOL"):
            argv.append("memcache-protocol=" + os.environ["MEMCACHE_PROTOCOL"])
        nbdkit = procs.spawn(argv, tmp + "/nbdkit.log")
        procs.wait_for(lambda: os.path.exists(ctl) and os.path.exists(sock),
                       10, "nbdkit's sockets")
        uri = "nbd+unix:///?socket=" + sock
        return warm_passes(uri, ctl, ports, image, nwarm, busy, rnd)
    finally:
        if nbdkit:
            procs.stop(nbdkit, timeout=30)
        for p in servers:
            procs.stop(p, signal.SIGKILL)
        # WARM_PASSES_VERBOSE=1 WARM_PASSES_LOG=FILE: nbdkit -v's log of
        # every round, appended to FILE.
        if os.environ.get("WARM_PASSES_LOG"):
            with open(os.environ["WARM_PASSES_LOG"], "ab") as out, \
                    open(tmp + "/nbdkit.log", "rb") as f:
                out.write(f.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--loads", default="idle,busy")
    # The median pass must reach --min-ratio, every pass --floor.  A 5 ms
    # timeout also expires when this host is starved of CPU, not only when
    # a server is slow: with two full test runs and two builds on the 2
    # cores (load average 8), one warm pass in eight hit 98.4% (53
    # timeouts, a server down for 220 blocks) and the others 99.2-100%.
    # Before the health model, idle passes hit 0-66%.
    ap.add_argument("--min-ratio", type=float, default=0.99)
    ap.add_argument("--floor", type=float, default=0.95)
    ap.add_argument("--no-assert", action="store_true")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--abd-run", metavar="PATH",
                    help="run the passes on scripts/abd-run's stack")
    args = ap.parse_args()

    rnd = random.Random(args.seed)
    worst = 1.0
    passes = []
    with tempfile.TemporaryDirectory(prefix="abd-warm.", dir="/var/tmp") \
            as tmp:
        image_path = tmp + "/img"
        image = rnd.randbytes(SIZE)
        with open(image_path, "wb") as f:
            f.write(image)
        summary = {}
        for load in args.loads.split(","):
            for r in range(args.rounds):
                print("%s, round %d:" % (load, r + 1), flush=True)
                try:
                    if args.abd_run:
                        ratios = abd_run_round(args.abd_run, tmp, image_path,
                                               image, args.warm,
                                               load == "busy", rnd)
                    else:
                        ratios = one_round(tmp, image_path, image, args.warm,
                                           load == "busy", rnd)
                except (AssertionError, procs.Timeout, RuntimeError) as e:
                    print("FAIL: %s\nnbdkit log:\n%s"
                          % (e, procs.tail(tmp + "/nbdkit.log")))
                    return 2
                summary.setdefault(load, []).extend(ratios)
                worst = min([worst] + [r for r, _ in ratios])
                passes.extend(r for r, _ in ratios)
        for load, ratios in summary.items():
            print("%s: warm passes (%%, memcached's get_hits): %s" % (
                load, " ".join("%.1f" % (100 * r) for r, _ in ratios)))
            print("%s: warm passes (%%, the filter's hits):    %s" % (
                load, " ".join("%.1f" % (100 * f) for _, f in ratios)))
    median = statistics.median(passes) if passes else 0.0
    print("warm passes: median %.1f%%, worst %.1f%%"
          % (100 * median, 100 * worst))
    if args.no_assert:
        return 0
    if median < args.min_ratio:
        print("FAIL: the median warm pass hit %.1f%% of its blocks (< %.0f%%)"
              % (100 * median, 100 * args.min_ratio))
        return 1
    if worst < args.floor:
        print("FAIL: a warm pass hit %.1f%% of its blocks (< %.0f%%)"
              % (100 * worst, 100 * args.floor))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
