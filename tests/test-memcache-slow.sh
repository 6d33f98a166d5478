#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a slow server keeps its cache.  One of three
# memcached servers is frozen (SIGSTOP) again and again, for less than
# memcache-timeout (requests wait for it) and for more (requests time out,
# the server goes down, and what it had been sent is carried out late,
# after SIGCONT), while a client reads and writes through nbdkit.
#
# First, one late store on purpose: with server1 frozen, block B is
# written (its store times out: its outcome is unknown) and written again
# (server1 is down: skipped); after SIGCONT the first store lands, under
# B's key, and a read of B must still return the second write's data.
# Then a random workload with freezes of both lengths, three times:
#
#   - every read equals a model of the writes, byte for byte, and so does
#     the image at the end;
#   - the long freezes made requests time out (the test caused them);
#   - the frozen server's generation never changes: its cache is kept,
#     since block versions make late stores harmless;
#   - within RECOVER_S (1 s) of each SIGCONT, the server's blocks hit
#     again: in a window of the filter's counters, hits >= 80% of its
#     lookups (hits + misses + blocks skipped while it was down).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three
# 16 MiB: 4096 blocks, too many to fill again within a second if the
# frozen server's cache were dropped.
head -c $(( 16 * 1024 * 1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
# memcache-retry=200: the first probe 200 ms after a server goes down.
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=slow-test \
    memcache-timeout=100 memcache-retry=200 memcache-control="$ctl"

nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"

export uri IMG=$tmp/img CTL=$ctl FROZEN_PID=${MC_PIDS[1]} RECOVER_S=1 \
    FROZEN_PORT=${MC_PORTS[1]}
PYTHONPATH=$abs_top_srcdir/tests "$PY" -c '
import os, random, signal, sys, threading, time
import nbd
import abd_control
import memcached_peer

TIMEOUT = 0.1                   # memcache-timeout
RECOVER_S = float(os.environ["RECOVER_S"])
BS = 4096
ctl, pid = os.environ["CTL"], int(os.environ["FROZEN_PID"])
model = bytearray(open(os.environ["IMG"], "rb").read())
nblocks = len(model) // BS
h = nbd.NBD()
h.connect_uri(os.environ["uri"])
stop = threading.Event()
errors = []
ops = {"reads": 0, "writes": 0}

def workload():
    rnd = random.Random(11)
    hot = [rnd.randrange(nblocks) for _ in range(32)]
    try:
        while not stop.is_set():
            r = rnd.random()
            if r < 0.75:
                n = rnd.choice((1, 1, 1, 4, 16))
                b = rnd.randrange(nblocks - n + 1)
                if h.pread(n * BS, b * BS) != model[b * BS:(b + n) * BS]:
                    raise AssertionError("blocks %d..%d differ from the model"
                                         % (b, b + n - 1))
                ops["reads"] += 1
            else:
                # Whole blocks (stored: update policy), half of them in a
                # small hot set so that late stores meet later writes;
                # sometimes unaligned (deleted).
                if r < 0.95:
                    b = rnd.choice(hot) if rnd.random() < 0.5 \
                        else rnd.randrange(nblocks)
                    off, n = b * BS, BS
                else:
                    n = rnd.randint(1, 3 * BS)
                    off = rnd.randrange(len(model) - n)
                data = os.urandom(n)
                h.pwrite(data, off)
                model[off:off + n] = data
                ops["writes"] += 1
    except Exception as e:
        errors.append(repr(e))
        stop.set()

def server1():
    return abd_control.status_json(ctl)["servers"]["server1"]

def lookups(s):
    return s["hits"], s["hits"] + s["misses"] + s["skipped_down"]

def wait_recovered(since, what):
    """The first 0.1 s window of counters, starting after SINCE, in which
    server1 is up and >= 80% of its lookups hit; fail after RECOVER_S."""
    prev = server1()
    while True:
        time.sleep(0.1)
        cur = server1()
        hits = cur["hits"] - prev["hits"]
        total = lookups(cur)[1] - lookups(prev)[1]
        if cur["state"] == "up" and total >= 5 and hits >= 0.8 * total:
            took = time.monotonic() - since
            print("%s: %d of %d lookups hit, %.2f s after SIGCONT"
                  % (what, hits, total, took))
            if took > RECOVER_S:
                sys.exit("%s: hit rate recovered only after %.2f s" % (what, took))
            return
        if errors:
            sys.exit("workload failed: " + errors[0])
        if time.monotonic() - since > RECOVER_S:
            sys.exit("%s: no window of >= 80%% hits within %.1f s of SIGCONT "
                     "(last: %d of %d, state %s)"
                     % (what, RECOVER_S, hits, total, cur["state"]))
        prev = cur

def late_store():
    """A store that lands after a later write of its block."""
    b = next(b for b in range(nblocks)
             if abd_control.request_json(ctl, "locate", str(b))["server"] == 1)
    key = abd_control.request_json(ctl, "locate", str(b))["key"]
    port = int(os.environ["FROZEN_PORT"])
    st0 = abd_control.status_json(ctl)
    first, second = os.urandom(BS), os.urandom(BS)
    os.kill(pid, signal.SIGSTOP)
    try:
        h.pwrite(first, b * BS)         # its store times out
        st1 = abd_control.status_json(ctl)
        assert st1["uncertain"] > st0["uncertain"], "the store did not time out"
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
t = threading.Thread(target=workload)
t.start()
try:
    time.sleep(0.5)
    wait_recovered(time.monotonic(), "before any freeze")
    before = server1()
    for rnd in range(3):
        for pause in (TIMEOUT / 2, TIMEOUT * 4):
            what = "round %d, %d ms freeze" % (rnd + 1, pause * 1000)
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(pause)
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_recovered(time.monotonic(), what)
    after = server1()
finally:
    os.kill(pid, signal.SIGCONT)
    stop.set()
    t.join()
if errors:
    sys.exit("workload: " + errors[0])
print("ops:", ops, "server1 timeouts %d, downs %d, generation %d -> %d"
      % (after["timeouts"] - before["timeouts"],
         after["downs"] - before["downs"], before["generation"],
         after["generation"]))
st = abd_control.status_json(ctl)
print("auth_failures %d, uncertain %d, fills %d, fills_raced %d, updates %d"
      % (st["auth_failures"], st["uncertain"], st["fills"],
         st["fills_raced"], st["updates"]))
assert after["timeouts"] > before["timeouts"] and after["downs"] > before["downs"], \
    "the long freezes caused no timeout: the test did not test"
assert after["generation"] == before["generation"], \
    "server1 lost its cache: generation %d -> %d" % (before["generation"],
                                                     after["generation"])
assert ops["writes"] > 50 and ops["reads"] > 50, ops
assert h.pread(len(model), 0) == model, "final read differs from the model"
h.shutdown()
open(os.path.dirname(os.environ["IMG"]) + "/model", "wb").write(model)
' || fail "slow server"
cmp "$tmp/img" "$tmp/model" || fail "the image differs from the model"
echo "$0: OK"
