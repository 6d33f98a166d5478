#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a slow server keeps its cache.  One of three
# memcached servers (server1) is frozen with SIGSTOP again and again, for
# less than memcache-timeout (requests wait for it) and for more
# (requests time out, the server is suspect, down after three stalls in
# a row, and what it had been sent is carried out late, after SIGCONT),
# while a client reads and writes the first half of the device through
# nbdkit.  (Whether a 400 ms freeze takes it down depends on the
# requests: one store, which waits 4 x memcache-timeout, can span it.)
#
# First, one late store on purpose: with server1 frozen, block B is
# written (its store times out: its outcome is unknown, server1 is
# suspect) and written again (its store times out too); after SIGCONT the
# stores land, the first one possibly last, under B's key, and a read of
# B must still return the second write's data.
# Then the workload, with freezes of both lengths, three times:
#
#   - every read equals a model of the writes, byte for byte, and so does
#     the image at the end;
#   - the long freezes made requests time out (the test caused them);
#   - server1's generation never changes;
#   - the p99 latency of the reads made during the rounds is at most the
#     lower device's p99 (the same reads, without the filter) + 2 x
#     memcache-timeout (issue #20);
#   - within RECOVER_S (1 s) of each SIGCONT, server1 is up and the first
#     read of a probe set (blocks of server1 in the second half, cached
#     before and never written) hits for >= 95% of its blocks, counted
#     by the filter's counters: the cache was kept.  (Had the server's
#     cache been dropped, that first read would miss every block.)

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three
head -c $(( 4 * 1024 * 1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
# memcache-retry=200: the first probe 200 ms after a server goes down.
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=slow-test \
    memcache-timeout=100 memcache-retry=200 memcache-control="$ctl"
# The same image without the filter, for the lower device's latency.
nbdkit -U "$tmp/lower.sock" -P "$tmp/lower.pid" -r file "$tmp/img"
wait_for 10 test -s "$tmp/lower.pid" || fail "nbdkit lower did not start"
cleanup_fn kill_wait "$(cat "$tmp/lower.pid")"
lower_uri="nbd+unix:///?socket=$tmp/lower.sock"

nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"

export uri lower_uri IMG=$tmp/img CTL=$ctl FROZEN_PID=${MC_PIDS[1]} RECOVER_S=1 \
    FROZEN_PORT=${MC_PORTS[1]}
PYTHONPATH=$abs_top_srcdir/tests "$PY" -c '
import os, random, signal, sys, threading, time
import nbd
from abdtest import control as abd_control
import memcached_peer

TIMEOUT = 0.1                   # memcache-timeout
RECOVER_S = float(os.environ["RECOVER_S"])
BS = 4096
ctl, pid = os.environ["CTL"], int(os.environ["FROZEN_PID"])
model = bytearray(open(os.environ["IMG"], "rb").read())
nblocks = len(model) // BS
half = nblocks // 2
h = nbd.NBD()
h.connect_uri(os.environ["uri"])
probe_h = nbd.NBD()
probe_h.connect_uri(os.environ["uri"])
stop, pause, paused = threading.Event(), threading.Event(), threading.Event()
errors = []
ops = {"reads": 0, "writes": 0}
timing = threading.Event()      # read latencies are recorded
latencies = []

def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]

def lower_p99():
    """The p99 of the workload\x27s reads on the lower device alone."""
    lh = nbd.NBD()
    lh.connect_uri(os.environ["lower_uri"])
    rnd, lat = random.Random(5), []
    for _ in range(1000):
        n = rnd.choice((1, 1, 4, 16))
        b = rnd.randrange(half - n + 1)
        t0 = time.monotonic()
        lh.pread(n * BS, b * BS)
        lat.append(time.monotonic() - t0)
    lh.shutdown()
    return p99(lat)

def server_of(b):
    return abd_control.request_json(ctl, "locate", str(b))["server"]

def server1():
    return abd_control.status_json(ctl)["servers"]["server1"]

def workload():
    """Reads and writes of the first half, checked against the model."""
    rnd = random.Random(11)
    hot = [rnd.randrange(half) for _ in range(16)]
    try:
        while not stop.is_set():
            if pause.is_set():
                paused.set()
                time.sleep(0.01)
                continue
            paused.clear()
            r = rnd.random()
            if r < 0.7:
                n = rnd.choice((1, 1, 4, 16))
                b = rnd.randrange(half - n + 1)
                t0 = time.monotonic()
                data = h.pread(n * BS, b * BS)
                if timing.is_set():
                    latencies.append(time.monotonic() - t0)
                if data != model[b * BS:(b + n) * BS]:
                    raise AssertionError("blocks %d..%d differ from the model"
                                         % (b, b + n - 1))
                ops["reads"] += 1
                continue
            # Whole blocks (stored: update policy), half of them in a small
            # hot set so that late stores meet later writes; sometimes
            # unaligned (deleted).
            if r < 0.95:
                b = rnd.choice(hot) if rnd.random() < 0.5 \
                    else rnd.randrange(half)
                off, n = b * BS, BS
            else:
                n = rnd.randint(1, 3 * BS)
                off = rnd.randrange(half * BS - n)
            data = os.urandom(n)
            h.pwrite(data, off)
            model[off:off + n] = data
            ops["writes"] += 1
    except Exception as e:
        errors.append(repr(e))
        stop.set()

probe = [b for b in range(half, nblocks) if server_of(b) == 1][:48]
assert len(probe) >= 24, "only %d probe blocks on server1" % len(probe)

def read_probe():
    for b in probe:
        if probe_h.pread(BS, b * BS) != model[b * BS:(b + 1) * BS]:
            raise AssertionError("probe block %d differs" % b)

def cache_kept(since, what):
    """Within RECOVER_S of SINCE, server1 is up and the first read of the
    probe set (the workload paused) hits for >= 95% of its blocks."""
    pause.set()
    while not paused.wait(0.01):
        if errors:
            sys.exit("workload failed: " + errors[0])
    try:
        while True:
            s0 = server1()
            if s0["state"] == "up":
                read_probe()
                s1 = server1()
                hits = s1["hits"] - s0["hits"]
                total = hits + s1["misses"] - s0["misses"] + \
                    s1["skipped_down"] - s0["skipped_down"]
                took = time.monotonic() - since
                if s1["skipped_down"] == s0["skipped_down"]:
                    print("%s: server1 up, %d of %d probe blocks hit, "
                          "%.2f s after SIGCONT" % (what, hits, total, took))
                    if took > RECOVER_S:
                        sys.exit("%s: up only after %.2f s" % (what, took))
                    if hits < 0.95 * total:
                        sys.exit("%s: the cache was not kept: %d of %d hits"
                                 % (what, hits, total))
                    return
            else:
                # A read of one of its blocks lets a probe bring it back.
                probe_h.pread(BS, probe[0] * BS)
            if time.monotonic() - since > RECOVER_S:
                sys.exit("%s: server1 not up %.1f s after SIGCONT (%s)"
                         % (what, RECOVER_S, s0["state"]))
            time.sleep(0.02)
    finally:
        pause.clear()

def late_store():
    """A store that lands after a later write of its block."""
    b = next(b for b in range(half) if server_of(b) == 1)
    key = abd_control.request_json(ctl, "locate", str(b))["key"]
    port = int(os.environ["FROZEN_PORT"])
    # Server1 up first (a timeout on a busy machine may have taken it
    # down for a while: then the first write would skip it).
    deadline = time.monotonic() + 10
    while server1()["state"] != "up":
        assert time.monotonic() < deadline, "server1 not up before the test"
        h.pread(BS, b * BS)
        time.sleep(0.02)
    st0 = abd_control.status_json(ctl)
    first, second = os.urandom(BS), os.urandom(BS)
    os.kill(pid, signal.SIGSTOP)
    try:
        h.pwrite(first, b * BS)         # its store times out
        st1 = abd_control.status_json(ctl)
        assert st1["uncertain"] > st0["uncertain"], \
            "the store did not time out (server1 %s)" % st1["servers"]["server1"]
        assert st1["servers"]["server1"]["state"] != "up", "server1 still up"
        h.pwrite(second, b * BS)        # server1 down: skipped
    finally:
        os.kill(pid, signal.SIGCONT)
    model[b * BS:(b + 1) * BS] = second
    deadline = time.monotonic() + 10
    while memcached_peer.get(port, key) is None:
        assert time.monotonic() < deadline, "the late store never landed"
        time.sleep(0.05)
    while server1()["state"] != "up":
        assert time.monotonic() < deadline, "server1 did not come back"
        assert h.pread(BS, b * BS) == second, "late store served"
        time.sleep(0.05)
    assert h.pread(BS, b * BS) == second, "late store served"
    st2 = abd_control.status_json(ctl)
    print("late store of block %d: landed, refused (auth_failures %d -> %d)"
          % (b, st0["auth_failures"], st2["auth_failures"]))

late_store()
lower = lower_p99()
t = threading.Thread(target=workload)
t.start()
try:
    time.sleep(0.3)
    before = server1()
    cache_kept(time.monotonic(), "before any freeze")
    timing.set()
    for rnd in range(3):
        for freeze in (TIMEOUT / 2, TIMEOUT * 4):
            what = "round %d, %d ms freeze" % (rnd + 1, freeze * 1000)
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(freeze)
            finally:
                os.kill(pid, signal.SIGCONT)
            cache_kept(time.monotonic(), what)
            time.sleep(0.3)
    timing.clear()
    after = server1()
finally:
    os.kill(pid, signal.SIGCONT)
    stop.set()
    t.join()
if errors:
    sys.exit("workload: " + errors[0])
st = abd_control.status_json(ctl)
print("ops:", ops, "server1 timeouts %d, downs %d, generation %d -> %d; "
      "auth_failures %d, uncertain %d, fills %d, updates %d"
      % (after["timeouts"] - before["timeouts"],
         after["downs"] - before["downs"], before["generation"],
         after["generation"], st["auth_failures"], st["uncertain"],
         st["fills"], st["updates"]))
assert after["timeouts"] > before["timeouts"], \
    "the long freezes caused no timeout: the test did not test"
assert after["generation"] == before["generation"], \
    "server1 lost its cache: generation %d -> %d" % (before["generation"],
                                                     after["generation"])
assert ops["writes"] > 50 and ops["reads"] > 50, ops
print("read p99 during the rounds: %.1f ms over %d reads (max %.1f ms); "
      "lower device alone: %.1f ms" % (1000 * p99(latencies), len(latencies),
                                      1000 * max(latencies), 1000 * lower))
assert p99(latencies) <= lower + 2 * TIMEOUT, \
    "read p99 %.1f ms > lower p99 %.1f ms + 2 x the timeout" % (
        1000 * p99(latencies), 1000 * lower)
assert h.pread(len(model), 0) == model, "final read differs from the model"
h.shutdown()
probe_h.shutdown()
open(os.path.dirname(os.environ["IMG"]) + "/model", "wb").write(model)
' || fail "slow server"
cmp "$tmp/img" "$tmp/model" || fail "the image differs from the model"
echo "$0: OK"
