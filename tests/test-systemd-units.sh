#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The example systemd units in scripts/systemd: `systemd-analyze verify`
# accepts each of them, and abd.service's ExecStart, with the settings of
# abd.default, really starts the stack: the command line is taken from the
# unit file, only /run/abd and the filter names are pointed at this test's
# directory and build tree.  Then data written through it is on the image
# after SIGTERM (the unit's KillSignal), as the unit's comments promise.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires systemd-analyze

units=$abs_top_srcdir/scripts/systemd
for u in abd.service abd-memcached.service abd-nbd.service; do
    # verify reports problems on stderr, not always in its exit status.
    systemd-analyze verify "$units/$u" >"$tmp/verify.out" 2>&1 ||
        { cat "$tmp/verify.out" >&2; fail "systemd-analyze verify $u"; }
    if grep -v 'Failed to prepare filename\|[Nn]o such file' "$tmp/verify.out" |
       grep -q .; then
        cat "$tmp/verify.out" >&2
        fail "systemd-analyze verify $u printed warnings"
    fi
done

# The ExecStart of abd.service, continuation lines joined.
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$units/abd.service" |
             sed 's/\\$//' | tr '\n' ' ' | sed 's/^ExecStart=//')
[ -n "$exec_start" ] || fail "no ExecStart in abd.service"
case $exec_start in
    *--filter=async*--filter=memcache*) ;;
    *) fail "abd.service does not stack async over memcache: $exec_start" ;;
esac

# The settings: abd.default's names, this test's values.
start_memcached units
while IFS='=' read -r name _; do
    case $name in ABD_*) ;; *) continue ;; esac
    case $name in
        ABD_DEVICE) export ABD_DEVICE=$tmp/disk.img ;;
        ABD_MEMCACHE_SERVERS) export ABD_MEMCACHE_SERVERS=127.0.0.1:$mc_port ;;
        ABD_MEMCACHE_ID) export ABD_MEMCACHE_ID=units-test ;;
        ABD_MAX_DIRTY) export ABD_MAX_DIRTY=16M ;;
        ABD_EXTRA) export ABD_EXTRA=async-writeback-delay=60000 ;;
        ABD_NBD_DEVICE) ;;
        *) fail "abd.default sets $name, which this test does not know" ;;
    esac
done < "$units/abd.default"
truncate -s 64M "$ABD_DEVICE"

run=$tmp/run
mkdir -p "$run"
cmd=${exec_start//\/run\/abd/$run}
# The nbdkit in $PATH: the same program (systemd-analyze verify checked
# the unit's path), or the sanitizer wrapper of tests/functions.sh.
case $cmd in
    /usr/bin/nbdkit\ *) cmd="nbdkit ${cmd#/usr/bin/nbdkit }" ;;
    *) fail "abd.service does not run /usr/bin/nbdkit: $cmd" ;;
esac
cmd=${cmd//--filter=async/--filter=$ASYNC_FILTER}
cmd=${cmd//--filter=memcache/--filter=$MEMCACHE_FILTER}
# systemd expands ${NAME} and $NAME (the latter split into words).
eval "set -- $cmd"
"$@" || fail "abd.service's ExecStart failed: $cmd"
wait_for 10 test -s "$run/abd.pid" || fail "no PID file $run/abd.pid"
nbd_pid=$(cat "$run/abd.pid")
cleanup_fn kill_wait "$nbd_pid"

[ -S "$run/abd.sock" ] || fail "no NBD socket"
"$ABDCTL" -s "$run/memcache.ctl" status >/dev/null || fail "memcache control"
head -c 4M /dev/urandom > "$tmp/data"
nbdcopy "$tmp/data" "nbd+unix:///?socket=$run/abd.sock"
[ "$(status_field "$run/async.ctl" dirty_bytes)" -gt 0 ] ||
    fail "the async filter is not holding the data (writeback delay)"

stop_nbdkit "$nbd_pid"
cmp -n 4M "$tmp/data" "$ABD_DEVICE" ||
    fail "data not on the image after SIGTERM"
echo "$0: OK"
