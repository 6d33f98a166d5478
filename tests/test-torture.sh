#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/torture, CI-sized: 20 seconds of random I/O with faults against
# each stack (async, memcache, full), with two fixed seeds.  Every read is
# checked byte-exactly against the model; the image is checked after every
# SIGTERM and after every sync-mode power cut; any mismatch, unexpected
# error, stall or nbdkit crash fails the run (scripts/torture --help).
# Each run must also have done real work: requests, faults, data written
# back by the async filter, reads served by memcached.
#
# Under the async filter the disk is nbdkit-powercut-plugin (torture
# --lower): unflushed writes are lost when nbdkit exits.  So a power cut
# proves that a flush in sync mode reached the disk below (removing the
# async filter's lower flush makes these runs fail), and a SIGTERM that
# the async filter flushed the disk at exit.  One more, shorter run of
# the async stack has power cuts often, so that several are checked
# whatever the timing.
#
# Left out: the abrupt close of a connection with requests in flight
# ("disconnect").  nbdkit 1.32 itself aborts on it ("raw_send_socket:
# Assertion `sock >= 0' failed", plain `nbdkit file`, no abd filter), so
# every run would fail on nbdkit, not on abd.  The graceful disconnect
# with requests in flight (NBD_CMD_DISC, "disc") is in.
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

faults=${TORTURE_FAULTS:-werr,rerr,disc,restart,powercut,mode,syncfile,mc_stop,mc_kill,mc_stale}
failed=()
# run STACK SEED FAULTS SECONDS MIN_CUTS [ARGS...]: one torture run and its
# checks; MIN_CUTS power cuts at least must have been checked.
run ()
{
    local stack=$1 seed=$2 kinds=$3 secs=$4 min_cuts=$5
    shift 5
    local out=$tmp/torture-$stack-$seed.out rc=0 last why= counters
    # shellcheck disable=SC2086
    "$abs_top_srcdir/scripts/torture" --seconds "$secs" --seed "$seed" \
        --stack "$stack" --faults "$kinds" "$@" ${TORTURE_ARGS:-} \
        >"$out" 2>&1 || rc=$?
    last=$(tail -n 1 "$out")
    echo "$stack seed $seed: exit $rc: $last"
    counters=$(grep '^torture: counters:' "$out" || true)
    # (0 when the counter is missing)
    field () { sed -n "s/.*[ ,]$1=\([0-9]*\).*/\1/p;t;\$s/.*/0/p" <<<"$counters"; }
    if [ "$rc" -ne 0 ]; then
        why="exit status $rc"
    elif ! [[ $last =~ ^torture:\ ([0-9]+)\ ops,\ ([0-9]+)\ faults\ .*\ ([0-9]+)\ mismatches,\ seed\ $seed$ ]]; then
        why="no summary line"
    elif [ "${BASH_REMATCH[3]}" -ne 0 ]; then
        why="${BASH_REMATCH[3]} mismatches"
    elif [ "${BASH_REMATCH[1]}" -lt 200 ] || [ "${BASH_REMATCH[2]}" -lt 1 ]; then
        why="too little was done (${BASH_REMATCH[1]} ops, ${BASH_REMATCH[2]} faults)"
    elif [ "$stack" != memcache ] && [ "$(field async.written_back_bytes)" -le 0 ]; then
        why="the async filter wrote nothing back"
    elif [ "$stack" != async ] && [ "$(field memcache.hits)" -le 0 ]; then
        why="no read was served from memcached"
    elif [ "$(field powercut.cuts)" -lt "$min_cuts" ]; then
        why="fewer than $min_cuts power cuts were checked"
    fi
    if [ -n "$why" ]; then
        echo "---- $stack seed $seed ----" >&2
        grep -v '^torture: \[[0-9.]*\] fault ' "$out" | tail -n 40 >&2
        failed+=("$stack/$seed: $why")
    fi
}

for stack in async memcache full; do
    for seed in 1 2; do
        run $stack $seed "$faults" 20 0
    done
done
# Sync mode's flush promise over the powercut plugin (unflushed writes
# are lost at the cut), with power cuts often enough that every run
# checks several: the runs above may reach few by chance.
if [ -z "${TORTURE_FAULTS:-}" ]; then
    run async 3 powercut,mode,restart 15 2 --fault-gap 30
fi
[ ${#failed[@]} -eq 0 ] || fail "torture runs failed: ${failed[*]}"
echo "$0: OK"
