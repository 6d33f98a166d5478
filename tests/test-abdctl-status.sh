#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl's default sockets and its status for people: without -s, status
# asks /run/abd/async.ctl and /run/abd/memcache.ctl, each that exists, one
# after the other under its layer name (--json: one object with "async"
# and "memcache" keys holding each filter's own answer; --raw: each
# filter's lines under its name); neither there is exit 2;
# ABDCTL_SOCKET overrides the defaults and -s wins over it; flush and mode
# go to the async socket, locate to the memcache one.  The human-readable
# status shows sizes with units and bytes, dirty as a share of the
# maximum, and the memcache hit ratio.
#
# /run is a directory of this test's in a mount namespace (in_run), so the
# defaults are tested as they are, without touching the machine's /run.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
source "$abs_top_srcdir/tests/test-abdctl-helpers.sh"

abdctl_stack_start
export uri
run=$tmp/run

# 1 MiB dirty (of the default 256 MiB: 0.4%); 1 MiB elsewhere read twice
# (cold: 256 misses, warm: 256 hits of 4 KiB blocks: 50.0%).
nbd_write 0 $(( 1 << 20 ))
nbd_read $(( 8 << 20 )) $(( 1 << 20 ))
mc_filled "$mctl"
nbd_read $(( 8 << 20 )) $(( 1 << 20 ))

# Both layers, in order, each under its name and path.
in_run "$run" "$ABDCTL" status > "$tmp/both" || fail "status without -s failed"
grep -n '^[a-z]' "$tmp/both" > "$tmp/heads"
[ "$(cut -d: -f2- "$tmp/heads")" = "async: /run/abd/async.ctl
memcache: /run/abd/memcache.ctl" ] || { cat "$tmp/both"; fail "status: wrong layer headings"; }
grep -qxE '  dirty: +1\.0 MiB \(1048576 bytes\), 0\.4% of 256\.0 MiB' "$tmp/both" ||
    { cat "$tmp/both"; fail "status: no dirty line with units, bytes and share"; }
grep -qE '^  hit ratio: +50\.0% \(256 hits, 256 misses, 0 skipped' "$tmp/both" ||
    { cat "$tmp/both"; fail "status: no memcache hit ratio of 50.0%"; }
for port in $mc1_port $mc2_port; do
    grep -qE "^    127\.0\.0\.1:$port: up, hit ratio [0-9.]+%" "$tmp/both" ||
        { cat "$tmp/both"; fail "status: no line for server $port"; }
done
# Nothing raw left over: every field the filters give has its place.
! grep -qE '^  [a-z_]+: [0-9-]+$' "$tmp/both" ||
    { cat "$tmp/both"; fail "status: a raw field was left over"; }

# --json: one object, each layer's answer as the filter gives it.
in_run "$run" "$ABDCTL" --json status > "$tmp/both.json" || fail "--json status failed"
"$ABDCTL" -s "$actl" --json status > "$tmp/a.json" || fail "-s async --json failed"
"$ABDCTL" -s "$mctl" --json status > "$tmp/m.json" || fail "-s memcache --json failed"
"$PY" - "$tmp" <<'EOF2' || fail "--json of both layers is wrong"
import json, sys
t = sys.argv[1]
both = json.load(open(t + "/both.json"))
a, m = json.load(open(t + "/a.json")), json.load(open(t + "/m.json"))
assert list(both) == ["async", "memcache"], list(both)
assert list(both["async"]) == list(a) and list(both["memcache"]) == list(m)
assert both["async"]["dirty_bytes"] == a["dirty_bytes"] == 1 << 20
assert both["memcache"]["hits"] == m["hits"] == 256
EOF2

# --raw: each layer's name: value lines, indented under its name.
in_run "$run" "$ABDCTL" --raw status > "$tmp/both.raw" || fail "--raw status failed"
grep -qx 'async:' "$tmp/both.raw" && grep -qx 'memcache:' "$tmp/both.raw" &&
    grep -qx '  dirty_bytes: 1048576' "$tmp/both.raw" &&
    grep -qx '  hits: 256' "$tmp/both.raw" ||
    { cat "$tmp/both.raw"; fail "--raw of both layers is wrong"; }

# One socket there: only that layer.
mkdir -p "$tmp/only-mc/abd" "$tmp/none/abd"
ln -s "$mctl" "$tmp/only-mc/abd/memcache.ctl"
in_run "$tmp/only-mc" "$ABDCTL" status > "$tmp/one" || fail "status of memcache only failed"
[ "$(grep '^[a-z]' "$tmp/one")" = "memcache: /run/abd/memcache.ctl" ] ||
    { cat "$tmp/one"; fail "status of memcache only: wrong headings"; }
in_run "$tmp/only-mc" "$ABDCTL" --json status > "$tmp/one.json" || fail "--json of one layer failed"
"$PY" -c 'import json, sys; assert "hits" in json.load(open(sys.argv[1]))' "$tmp/one.json" ||
    fail "--json of one layer is not the filter's own answer"

# None there: exit 2, naming both defaults.
rc=0; in_run "$tmp/none" "$ABDCTL" status >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -eq 2 ] && grep -q /run/abd/async.ctl "$tmp/err" &&
    grep -q /run/abd/memcache.ctl "$tmp/err" ||
    fail "no socket: exit $rc, $(cat "$tmp/err")"

# ABDCTL_SOCKET overrides the defaults; -s wins over it.
ABDCTL_SOCKET=$actl in_run "$run" "$ABDCTL" status > "$tmp/env" || fail "ABDCTL_SOCKET status failed"
[ "$(grep '^[a-z]' "$tmp/env")" = "async: $actl" ] || fail "ABDCTL_SOCKET did not choose the socket"
ABDCTL_SOCKET=$tmp/no-such.ctl "$ABDCTL" -s "$mctl" status > "$tmp/env" ||
    fail "-s did not win over ABDCTL_SOCKET"
grep -q '^memcache: ' "$tmp/env" || fail "-s did not win over ABDCTL_SOCKET"
rc=0; ABDCTL_SOCKET=$tmp/no-such.ctl "$ABDCTL" mode sync 2>"$tmp/err" || rc=$?
[ $rc -eq 2 ] && grep -q no-such.ctl "$tmp/err" || fail "ABDCTL_SOCKET not used by mode"

# Commands go to their filter's default socket.
in_run "$run" "$ABDCTL" mode sync | grep -qx 'mode: sync' || fail "mode sync without -s"
in_run "$run" "$ABDCTL" flush 30 || fail "flush without -s"
in_run "$run" "$ABDCTL" locate 5 | grep -qx 'block: 5' || fail "locate without -s"
[ "$(status_field "$actl" dirty_bytes)" -eq 0 ] || fail "flush without -s left dirty data"
rc=0; in_run "$run" "$ABDCTL" frobnicate 2>"$tmp/err" || rc=$?
[ $rc -eq 2 ] && grep -q Usage "$tmp/err" || fail "unknown command without -s: exit $rc"

stop_nbdkit "$pid"
echo "$0: OK"
