#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: writes that skip a down server leave no trail
# of dead values.  Server1 is stopped (SIGUSR1: memcached -e keeps its
# memory in a file), so its connections fail and it is down at once (a
# hard failure); 20 of its blocks are written meanwhile (skipped: their
# versions go up, so its old values of them never authenticate again).
# It is restarted with its old memory.  Once a probe finds it up, the fill
# thread deletes those 20 keys (the deletes the writes left owed), so:
#   - the old values are gone from server1 (memcached itself says so);
#   - the next read of those blocks returns the new data, as 20 plain
#     misses, not 20 authentication failures;
#   - the blocks not written are still served from server1 (it kept its
#     cache).

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit memcached
requires_python_nbd

export MEMCACHE_FILTER TMPDIR=$tmp
"$PY" -c '
import os, signal, sys, time
import nbd
from abdtest import control, procs
import memcached_peer

BS = 4096
tmp = os.environ["TMPDIR"]
servers = [procs.Memcached(tmp, "s%d" % i) for i in range(3)]
for s in servers:
    s.start()
nbdkit = None
try:
    image = os.urandom(4 * 1024 * 1024)
    nblocks = len(image) // BS
    open(tmp + "/img", "wb").write(image)
    sock, ctl = tmp + "/nbd.sock", tmp + "/ctl.sock"
    # memcache-retry=5000: no probe while the writes below run.
    argv = ["nbdkit", "-f", "-U", sock, "--filter=" + os.environ["MEMCACHE_FILTER"],
            "file", tmp + "/img", "memcache-id=skipped-test",
            "memcache-servers=" + ",".join("127.0.0.1:%d" % s.port
                                          for s in servers),
            "memcache-retry=5000", "memcache-control=" + ctl]
    if os.environ.get("MEMCACHE_PROTOCOL"):
        argv.append("memcache-protocol=" + os.environ["MEMCACHE_PROTOCOL"])
    nbdkit = procs.spawn(argv, tmp + "/nbdkit.log")
    procs.wait_for(lambda: os.path.exists(sock) and os.path.exists(ctl), 10,
                   "nbdkit")
    h = nbd.NBD()
    h.connect_uri("nbd+unix:///?socket=" + sock)

    def status():
        return control.status_json(ctl)

    def server1():
        return status()["servers"]["server1"]

    def located(b):
        return control.request_json(ctl, "locate", str(b))

    assert h.pread(len(image), 0) == image, "cold read differs"
    procs.wait_for(lambda: status()["fills_queued"] == 0, 20, "fills queued")
    on1 = [b for b in range(nblocks) if located(b)["server"] == 1]
    written, kept = on1[:20], on1[20:60]
    assert len(kept) == 40, "too few blocks on server1"
    old_keys = {b: located(b)["key"] for b in written}

    # Stop server1 (its memory kept in its file); a read finds it down.
    servers[1].send(signal.SIGUSR1)
    servers[1].proc.wait(10)
    def down():
        h.pread(BS, kept[0] * BS)
        return server1()["state"] == "down"
    procs.wait_for(down, 10, "server1 down")

    for b in written:
        data = os.urandom(BS)
        h.pwrite(data, b * BS)
        image = image[:b * BS] + data + image[(b + 1) * BS:]
    assert server1()["state"] == "down", "server1 probed during the writes"

    # Back with its old memory: the old values of the written blocks are
    # there, until the owed deletes are sent.
    time.sleep(1.2)             # memcached -e: a restart within the second
    servers[1].start(stale=True) # it stopped in is refused ("stop_time")
    port = servers[1].port
    present = [b for b in written if memcached_peer.get(port, old_keys[b])]
    assert len(present) == len(written), \
        "server1 restarted without its memory: %d of %d old values" % (
            len(present), len(written))
    st0 = status()
    def up():
        assert h.pread(BS, kept[0] * BS) == image[kept[0] * BS:(kept[0] + 1) * BS]
        return server1()["state"] == "up"
    procs.wait_for(up, 20, "server1 up again")
    procs.wait_for(lambda: status()["invalidations"] - st0["invalidations"]
                   >= len(written), 10, "the owed deletes")
    left = [b for b in written if memcached_peer.get(port, old_keys[b])]
    assert not left, "old values of blocks %s still on server1" % left

    st1 = status()
    for b in written + kept:
        assert h.pread(BS, b * BS) == image[b * BS:(b + 1) * BS], \
            "block %d differs" % b
    st2 = status()
    d = {k: st2[k] - st1[k] for k in ("hits", "misses", "auth_failures")}
    print("after the restart: %s (20 written while down, 40 not)" % d)
    assert d["auth_failures"] == 0, "old values read: %s" % d
    assert d["misses"] == len(written), d
    assert d["hits"] == len(kept), d
    h.shutdown()
finally:
    if nbdkit:
        procs.stop(nbdkit, timeout=30)
    for s in servers:
        s.stop()
' || fail "skipped writes"
echo "$0: OK"
