#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/ups without a UPS daemon: abd-nut-notify, abd-upssched-cmd and
# the apcupsd event scripts run by hand against two async filters (A has
# async-sync-file=), each checked with `abdctl status`:
#
#   - the settings file: ABD_CONTROL with two sockets switches both; lines
#     that are not shell (systemd EnvironmentFile style) do no harm; the
#     environment wins over the file
#   - ABD_SYNC_FILE alone: the file is created and removed, the filter
#     follows it (mode_reason sync-file)
#   - ignored types change nothing; no NOTIFYTYPE exits 2
#   - abd-upssched-cmd: onbatt / online / lowbatt switch, unknown names
#     exit 2
#   - apcupsd: onbattery and offbattery switch; doshutdown writes every
#     dirty byte to the file; with a socket that is not there, onbattery
#     exits 1 and doshutdown exits 0 (never 99, which stops apccontrol's
#     own action, the shutdown)

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires cmp

ups=$abs_top_srcdir/scripts/ups
export ABD_NOTIFY=$ups/abd-nut-notify
export ABD_CONFIG=/dev/null
unset ABD_CONTROL ABD_SYNC_FILE ABD_FLUSH_TIMEOUT ABD_ONBATT_FLUSH
unset NOTIFYTYPE UPSNAME

size=$(( 4 * 1024 * 1024 ))
truncate -s $size "$tmp/a.img" "$tmp/b.img" "$tmp/expected"
a=$tmp/a.ctl b=$tmp/b.ctl
async_start a --filter="$ASYNC_FILTER" file "$tmp/a.img" async-control="$a" \
    async-sync-file="$tmp/on-battery" async-writeback-delay=60000 \
    async-write-size=32M
uri_a=$uri
async_start b --filter="$ASYNC_FILTER" file "$tmp/b.img" async-control="$b"

# expect_modes MODE-A MODE-B: the modes of both filters.
expect_modes ()
{
    local ma mb
    ma=$(st "$a" mode) mb=$(st "$b" mode)
    [ "$ma" = "$1" ] && [ "$mb" = "$2" ] ||
        fail "modes A=$ma B=$mb, expected A=$1 B=$2"
}

# a_is FIELD VALUE: A's status FIELD is VALUE.
a_is ()
{
    [ "$(status_field "$a" "$1")" = "$2" ]
}

# run_rc CMD...: run CMD (output to $tmp/out), print its exit status.
run_rc ()
{
    local rc=0
    "$@" >"$tmp/out" 2>&1 || rc=$?
    cat "$tmp/out" >&2
    echo "$rc"
}

#----------------------------------------------------------------------
# The settings file: two sockets; a systemd-style line that the shell
# would run as a command.
cat > "$tmp/abd.default" <<EOF
# abd settings
ABD_EXTRA=async-mlock=true async-mode=sync
ABD_CONTROL="$a $b"
EOF
export ABD_CONFIG=$tmp/abd.default
rc=$(run_rc env NOTIFYTYPE=ONBATT "$ABD_NOTIFY")
[ "$rc" -eq 0 ] || fail "ONBATT on two sockets exited $rc"
grep -q "not found" "$tmp/out" && fail "the settings file was run"
expect_modes sync sync
[ "$(st "$a" mode_reason)" = control ] || fail "A: mode_reason not control"
rc=$(run_rc env NOTIFYTYPE=ONLINE "$ABD_NOTIFY")
[ "$rc" -eq 0 ] || fail "ONLINE on two sockets exited $rc"
expect_modes async async

# The environment wins over the file.
rc=$(run_rc env NOTIFYTYPE=ONBATT ABD_CONTROL="$b" "$ABD_NOTIFY")
[ "$rc" -eq 0 ] || fail "ONBATT with ABD_CONTROL=B exited $rc"
expect_modes async sync
NOTIFYTYPE=ONLINE ABD_CONTROL="$b" "$ABD_NOTIFY" 2>/dev/null
expect_modes async async
export ABD_CONFIG=/dev/null
echo "settings file: OK"

#----------------------------------------------------------------------
# The sync file alone (no socket is tried).
rc=$(run_rc env NOTIFYTYPE=ONBATT ABD_SYNC_FILE="$tmp/on-battery" \
     "$ABD_NOTIFY")
[ "$rc" -eq 0 ] || fail "ONBATT with ABD_SYNC_FILE exited $rc"
[ -e "$tmp/on-battery" ] || fail "ONBATT did not create the sync file"
wait_for 10 a_is mode_reason sync-file ||
    fail "A does not follow the sync file"
expect_modes sync async
rc=$(run_rc env NOTIFYTYPE=ONLINE ABD_SYNC_FILE="$tmp/on-battery" \
     "$ABD_NOTIFY")
[ "$rc" -eq 0 ] || fail "ONLINE with ABD_SYNC_FILE exited $rc"
[ ! -e "$tmp/on-battery" ] || fail "ONLINE did not remove the sync file"
wait_for 10 a_is mode async ||
    fail "A stays in sync mode after the sync file went"
echo "sync file: OK"

#----------------------------------------------------------------------
# Types that are ignored, and no type.
rc=$(run_rc env NOTIFYTYPE=COMMBAD ABD_CONTROL="$a" "$ABD_NOTIFY")
[ "$rc" -eq 0 ] || fail "COMMBAD exited $rc"
expect_modes async async
rc=$(run_rc env ABD_CONTROL="$a" "$ABD_NOTIFY")
[ "$rc" -eq 2 ] || fail "no NOTIFYTYPE: exit $rc, expected 2"
grep -q "NOTIFYTYPE is not set" "$tmp/out" || fail "no NOTIFYTYPE: no message"
echo "ignored types: OK"

#----------------------------------------------------------------------
# abd-upssched-cmd.
export ABD_CONTROL=$a
rc=$(run_rc "$ups/abd-upssched-cmd" onbatt)
[ "$rc" -eq 0 ] || fail "upssched-cmd onbatt exited $rc"
expect_modes sync async
rc=$(run_rc "$ups/abd-upssched-cmd" online)
[ "$rc" -eq 0 ] || fail "upssched-cmd online exited $rc"
expect_modes async async
rc=$(run_rc "$ups/abd-upssched-cmd" lowbatt)
[ "$rc" -eq 0 ] || fail "upssched-cmd lowbatt exited $rc"
grep -q "LOWBATT: $a: flush 60 done" "$tmp/out" ||
    fail "upssched-cmd lowbatt did not flush"
expect_modes sync async
"$ups/abd-upssched-cmd" online 2>/dev/null
rc=$(run_rc "$ups/abd-upssched-cmd" no-such-timer)
[ "$rc" -eq 2 ] || fail "upssched-cmd with an unknown name exited $rc"
echo "abd-upssched-cmd: OK"

#----------------------------------------------------------------------
# apcupsd event scripts.
rc=$(run_rc "$ups/apcupsd/onbattery" ups1)
[ "$rc" -eq 0 ] || fail "apcupsd onbattery exited $rc"
expect_modes sync async
rc=$(run_rc "$ups/apcupsd/offbattery" ups1)
[ "$rc" -eq 0 ] || fail "apcupsd offbattery exited $rc"
expect_modes async async

# doshutdown with dirty data: everything on the file when it returns.
"$PY" - "$uri_a" "$tmp/expected" <<'EOF'
import nbd, random, sys
rnd = random.Random(7)
h = nbd.NBD()
h.connect_uri(sys.argv[1])
with open(sys.argv[2], "r+b") as f:
    for i in range(32):
        data = rnd.randbytes(4096)
        h.pwrite(data, i * 16384)
        f.seek(i * 16384)
        f.write(data)
h.flush()
h.shutdown()
EOF
[ "$(st "$a" dirty_bytes)" -gt 0 ] || fail "nothing dirty before doshutdown"
rc=$(run_rc "$ups/apcupsd/doshutdown" ups1)
[ "$rc" -eq 0 ] || fail "apcupsd doshutdown exited $rc"
[ "$(st "$a" dirty_bytes)" -eq 0 ] || fail "dirty data left after doshutdown"
cmp "$tmp/a.img" "$tmp/expected" || fail "the file differs after doshutdown"
expect_modes sync async

# A socket that is not there.
export ABD_CONTROL=$tmp/none.ctl
rc=$(run_rc "$ups/apcupsd/onbattery" ups1)
[ "$rc" -eq 1 ] || fail "apcupsd onbattery, no socket: exit $rc, expected 1"
rc=$(run_rc "$ups/apcupsd/doshutdown" ups1)
[ "$rc" -eq 0 ] || fail "apcupsd doshutdown, no socket: exit $rc, expected 0"
grep -q "FAILED" "$tmp/out" || fail "apcupsd doshutdown, no socket: no message"
echo "apcupsd scripts: OK"

echo "$0: OK"
