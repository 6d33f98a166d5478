#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: power cuts.  The store file is on
# ext4 whose disk is nbdkit-powercut-plugin (a volatile write cache: what
# was not flushed is lost when it dies) through nbdfuse and a loop device;
# the async filter runs over a lower file.  Each round: 4 connections
# write 4K blocks with flushes and FUA (tests/durable_powercut.py logs
# which writes a flush acknowledged), then nbdkit and the disk are killed
# together (SIGKILL) at a random moment.  The disk comes back (ext4
# replays its journal), nbdkit starts with the same store file, replays
# it and writes it back; after a clean stop, every block of the lower
# file holds its last flush-acknowledged write or a later one, whole.
# Rounds vary the writeback delay (0 ms: the lower file has most of it;
# 60 s: the store file has it all), the mode (round 2 in sync mode; in
# round 3 a UPS daemon's async-sync-file comes and goes every 0.2-0.5 s,
# switching modes under the workload) and the share of unflushed sectors
# the disk keeps anyway (0 or 0.3).
#
# ABD_TEST_EXPECT_LOSS=1 (test-async-durable-powercut-nosync.sh) runs
# nbdkit with ABD_TEST_STORE_NO_FDATASYNC=1, commits without their
# fdatasync, and passes only if some round loses flushed writes: it
# proves the check can fail.
#
# The disk, nbdfuse, the loop device and nbdkit: see
# tests/test-async-durable-helpers.sh (it skips (77) without root,
# /dev/fuse, loop devices, ext4 or nbdfuse).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-durable-helpers.sh"

tool=$abs_top_srcdir/tests/durable_powercut.py
size=$(( 8 * MiB ))
expect_loss=${ABD_TEST_EXPECT_LOSS:-}
rounds=${ABD_TEST_ROUNDS:-5}
[ -z "$expect_loss" ] || rounds=${ABD_TEST_ROUNDS:-3}

disk_up 1 0 mkfs
lost=0
for (( r=1; r<=rounds; r++ )); do
    delays=(0 20 300 60000)
    delay=${delays[$(( RANDOM % 4 ))]}
    persist=0; (( RANDOM % 2 )) && persist=0.3
    mode=async; [ "$r" -eq 2 ] && mode=sync
    switch=; [ "$r" -eq 3 ] && switch=", async-sync-file toggled"
    env=()
    if [ -n "$expect_loss" ]; then
        delay=60000 persist=0 mode=async
        env=(ABD_TEST_STORE_NO_FDATASYNC=1)
    fi
    work=$(( 2 + RANDOM % 3 ))
    cut_ms=$(( 500 + RANDOM % (work * 1000 - 300) ))
    echo "round $r: delay ${delay} ms, mode $mode$switch, unflushed-persist" \
         "$persist, cut after ${cut_ms} ms"

    # The disk as it is now (flushed), with new seeds for what it keeps.
    disk_down
    disk_up "$RANDOM" "$persist"
    "$PY" "$tool" init "$tmp/lower" "$size"
    rm -rf "$tmp/logs"; mkdir "$tmp/logs"
    async_up "w$r" "$delay" "$mode" "${env[@]+"${env[@]}"}"
    "$PY" "$tool" run "nbd+unix:///?socket=$a_sock" "$tmp/logs" 4 "$r$RANDOM" \
        "$work" > "$tmp/run.out" 2>&1 &
    wpid=$!
    toggler=
    if [ "$r" -eq 3 ] && [ -z "$expect_loss" ]; then
        ( while :; do
              touch "$tmp/onbatt"; sleep 0.$(( 2 + RANDOM % 4 ))
              rm -f "$tmp/onbatt"; sleep 0.$(( 2 + RANDOM % 4 ))
          done ) &
        toggler=$!
        cleanup_fn kill_wait "$toggler" 5
    fi
    sleep "$(( cut_ms / 1000 )).$(printf %03d $(( cut_ms % 1000 )))"
    # The power cut: nbdkit and its disk at once.
    kill -KILL "$a_pid" "$pc_pid"
    if [ -n "$toggler" ]; then
        kill_wait "$toggler" 5 || true
        rm -f "$tmp/onbatt"
    fi
    wait_for 30 exited "$wpid" || fail "the workload did not stop"
    wait "$wpid" || fail "the workload failed: $(cat "$tmp/run.out")"
    wait_for 10 exited "$a_pid" || fail "nbdkit w$r survived SIGKILL"
    grep -c "^F" "$tmp"/logs/* | tr '\n' ' '; echo
    pc_pid=
    disk_down

    # After the cut: the disk holds what it was told to flush.
    disk_up "$RANDOM" 0
    async_replay "r$r"
    if ! "$PY" "$tool" check "$tmp/lower" "$tmp/logs"; then
        [ -n "$expect_loss" ] ||
            fail "round $r: a flush-acknowledged write is lost or wrong"
        lost=$(( lost + 1 ))
    fi
done
disk_down

if [ -n "$expect_loss" ]; then
    [ "$lost" -gt 0 ] ||
        fail "commits without fdatasync lost nothing: the test cannot fail"
    echo "commits without fdatasync: $lost of $rounds rounds lost flushed writes (expected)"
fi
echo "$0: OK"
