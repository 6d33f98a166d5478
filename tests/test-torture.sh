#!/usr/bin/env bash
# scripts/torture, CI-sized: 20 seconds of random I/O with faults against
# each stack (async, memcache, full), with two fixed seeds.  Every read is
# checked byte-exactly against the model; the image is checked after every
# SIGTERM and after every sync-mode power cut; any mismatch, unexpected
# error, stall or nbdkit crash fails the run (scripts/torture --help).
# Each run must also have done real work: requests, faults, data written
# back by the async filter, reads served by memcached.
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
for stack in async memcache full; do
    for seed in 1 2; do
        out=$tmp/torture-$stack-$seed.out
        rc=0
        # shellcheck disable=SC2086
        "$abs_top_srcdir/scripts/torture" --seconds 20 --seed "$seed" \
            --stack "$stack" --faults "$faults" ${TORTURE_ARGS:-} \
            >"$out" 2>&1 || rc=$?
        last=$(tail -n 1 "$out")
        echo "$stack seed $seed: exit $rc: $last"
        why=
        if [ "$rc" -ne 0 ]; then
            why="exit status $rc"
        elif ! [[ $last =~ ^torture:\ ([0-9]+)\ ops,\ ([0-9]+)\ faults\ .*\ ([0-9]+)\ mismatches,\ seed\ $seed$ ]]; then
            why="no summary line"
        elif [ "${BASH_REMATCH[3]}" -ne 0 ]; then
            why="${BASH_REMATCH[3]} mismatches"
        elif [ "${BASH_REMATCH[1]}" -lt 200 ] || [ "${BASH_REMATCH[2]}" -lt 1 ]; then
            why="too little was done (${BASH_REMATCH[1]} ops, ${BASH_REMATCH[2]} faults)"
        else
            counters=$(grep '^torture: counters:' "$out" || true)
            field () { sed -n "s/.*[ ,]$1=\([0-9]*\).*/\1/p" <<<"$counters"; }
            if [ "$stack" != memcache ] && [ "$(field async.written_back_bytes)" -le 0 ]; then
                why="the async filter wrote nothing back"
            elif [ "$stack" != async ] && [ "$(field memcache.hits)" -le 0 ]; then
                why="no read was served from memcached"
            fi
        fi
        if [ -n "$why" ]; then
            echo "---- $stack seed $seed ----" >&2
            grep -v '^torture: \[[0-9.]*\] fault ' "$out" | tail -n 40 >&2
            failed+=("$stack/$seed: $why")
        fi
    done
done
[ ${#failed[@]} -eq 0 ] || fail "torture runs failed: ${failed[*]}"
echo "$0: OK"
