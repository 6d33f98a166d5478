#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/torture, CI-sized: 20 seconds of random I/O with faults against
# each stack (async, memcache, full), with two fixed seeds.  Every read is
# checked byte-exactly against the model; the image is checked after every
# SIGTERM, after every sync-mode power cut and after every crash; any
# mismatch, unexpected error, stall or unexpected nbdkit death fails the
# run (scripts/torture --help).  Each run must also have done real work:
# requests, faults, data written back by the async filter, reads served by
# memcached.
#
# Under the async filter the disk is nbdkit-powercut-plugin (torture
# --lower): unflushed writes are lost when nbdkit exits.  So a power cut
# proves that a flush in sync mode reached the disk below (removing the
# async filter's lower flush makes these runs fail), and a SIGTERM that
# the async filter flushed the disk at exit.  One more, shorter run of
# the async stack has power cuts often, so that several are checked
# whatever the timing.
#
# The async filter keeps its dirty data in a store file (torture's
# default), so a SIGKILL of nbdkit in async mode ("crash") must lose no
# acknowledged byte: after the restart has written the file back, the
# image and a read of everything must equal the model of acknowledged
# writes (only requests in flight at the kill are unknown).  The async
# runs must have checked at least one such write-back ("crash.replays"),
# and one more short run of the async stack crashes often, so that
# several are checked whatever the timing.
#
# With async-flush=store (--flush-store) the power cut stays in async
# mode: a flush commits the store file, SIGKILL, and the restart writes
# back what the file's last commit holds; the image must then hold every
# write acknowledged before the flush (powercut.replayed_bytes counts
# what the restarts wrote back from the file).
#
# The abrupt close of a connection with requests in flight
# ("disconnect") is in again.  nbdkit 1.32 itself often aborts on it
# ("raw_send_socket: Assertion `sock >= 0' failed", plain `nbdkit file`,
# no abd filter); with the store file that abort costs nothing, so
# torture handles it, and only it, as a crash (restart, write-back,
# check against the model: "crash.aborts"); any other death of nbdkit
# still fails the run.  The graceful disconnect with requests in flight
# (NBD_CMD_DISC, "disc") is in too.
#
# TORTURE_FAULTS replaces the list of fault kinds; TORTURE_ARGS adds
# arguments (TORTURE_ARGS=--break-model makes the model wrong on purpose:
# the test must fail).

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit memcached

# The script's shebang is /usr/bin/python3: the Python with the libnbd
# bindings on Debian (python3-libnbd).
if ! /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
    echo "$0: SKIP: /usr/bin/python3 has no nbd module (python3-libnbd)"
    exit 77
fi
[ -f "$MEMCACHE_FILTER" ] || fail "memcache filter not built: $MEMCACHE_FILTER"
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"

faults=${TORTURE_FAULTS:-werr,rerr,disc,disconnect,restart,powercut,crash,mode,syncfile,mc_stop,mc_kill,mc_stale}
failed=()
last_counters=
# counter NAME: a counter of the last run (0 when it is missing).
counter ()
{
    sed -n "s/.*[ ,]$1=\([0-9]*\).*/\1/p;t;\$s/.*/0/p" <<<"$last_counters"
}
# run STACK SEED FAULTS SECONDS MINIMA [ARGS...]: one torture run and its
# checks; MINIMA is a space-separated list of COUNTER=N (or "-"): each
# counter must be at least N.
run ()
{
    local stack=$1 seed=$2 kinds=$3 secs=$4 minima=$5 min
    shift 5
    local out=$tmp/torture-$stack-$seed.out rc=0 last why=
    # shellcheck disable=SC2086
    "$abs_top_srcdir/scripts/torture" --seconds "$secs" --seed "$seed" \
        --stack "$stack" --faults "$kinds" "$@" ${TORTURE_ARGS:-} \
        >"$out" 2>&1 || rc=$?
    last=$(tail -n 1 "$out")
    echo "$stack seed $seed: exit $rc: $last"
    last_counters=$(grep '^torture: counters:' "$out" || true)
    if [ "$rc" -ne 0 ]; then
        why="exit status $rc"
    elif ! [[ $last =~ ^torture:\ ([0-9]+)\ ops,\ ([0-9]+)\ faults\ .*\ ([0-9]+)\ mismatches,\ seed\ $seed$ ]]; then
        why="no summary line"
    elif [ "${BASH_REMATCH[3]}" -ne 0 ]; then
        why="${BASH_REMATCH[3]} mismatches"
    elif [ "${BASH_REMATCH[1]}" -lt 200 ] || [ "${BASH_REMATCH[2]}" -lt 1 ]; then
        why="too little was done (${BASH_REMATCH[1]} ops, ${BASH_REMATCH[2]} faults)"
    elif [ "$stack" != memcache ] && [ "$(counter async.written_back_bytes)" -le 0 ]; then
        why="the async filter wrote nothing back"
    elif [ "$stack" != async ] && [ "$(counter memcache.hits)" -le 0 ]; then
        why="no read was served from memcached"
    else
        for min in $minima; do
            [ "$min" = - ] && continue
            if [ "$(counter "${min%=*}")" -lt "${min#*=}" ]; then
                why="${min%=*} is below ${min#*=}"
            fi
        done
    fi
    if [ -n "$why" ]; then
        echo "---- $stack seed $seed ----" >&2
        grep -v '^torture: \[[0-9.]*\] fault ' "$out" | tail -n 40 >&2
        failed+=("$stack/$seed: $why")
    fi
}

for stack in async memcache full; do
    for seed in 1 2; do
        run $stack $seed "$faults" 20 -
    done
done
# Sync mode's flush promise over the powercut plugin (unflushed writes
# are lost at the cut), with power cuts often enough that every run
# checks several: the runs above may reach few by chance (on a busy
# machine a 20 s run may crash nbdkit once, with nothing dirty).  And
# async mode's promise with the store file, crashes as often: at least
# two restarts must write dirty data back from the store file.
if [ -z "${TORTURE_FAULTS:-}" ]; then
    run async 3 powercut,mode,restart 15 powercut.cuts=2 --fault-gap 30
    run async 4 crash,disconnect,mode,syncfile,werr 15 crash.replays=2 \
        --fault-gap 30
    # async-flush=store (the store file on a disk): power cuts in async
    # mode, the file kept, the restart writes back what its last commit
    # holds; every flushed write must be on the image after it.
    run async 9 powercut,mode,syncfile,werr 25 powercut.cuts=2 \
        --fault-gap 20 --flush-store
fi
[ ${#failed[@]} -eq 0 ] || fail "torture runs failed: ${failed[*]}"
echo "$0: OK"
