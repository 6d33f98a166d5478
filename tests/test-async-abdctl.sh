#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl against the async filter: exit status 0 on OK, 1 on ERR (bad
# mode, unknown command, bad flush timeout (only decimal digits, 0..86400),
# flush timed out, malformed request, an empty word), 2 on usage errors and when the request cannot be made (no such
# socket, nothing listening, not a socket, path too long); `--json` output
# is valid JSON with the same fields and numbers as the --raw text; every
# status field is present; `flush 5` returns 0 once drained.  Usage errors
# (no command, options that exclude each other) exit 2.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 4 * 1024 * 1024 ))
make_random "$tmp/disk" $size 91
ctl=$tmp/ctl.sock
# A slow lower device (200 ms per lower write, one writer) so that
# `flush 0` cannot be satisfied at once.
async_start ab --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=200ms async-control="$ctl" async-writeback-delay=60000 \
    async-write-size=32M async-writers=1 async-exit-timeout=5
export uri

failures=()
# expect RC CMD...: run abdctl with CMD, check its exit status; its
# stdout and stderr are left in $tmp/out and $tmp/err.
expect ()
{
    local want=$1 rc=0; shift
    "$ABDCTL" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        failures+=("abdctl $* exited $rc, expected $want (stderr: $(tr '\n' ' ' < "$tmp/err"))")
        return 1
    fi
}
# expect_err RC PATTERN CMD...: also stderr matches PATTERN, stdout empty.
expect_err ()
{
    local want=$1 pattern=$2; shift 2
    expect "$want" "$@" || return 0
    grep -qE -- "$pattern" "$tmp/err" ||
        failures+=("abdctl $*: stderr does not match '$pattern': $(tr '\n' ' ' < "$tmp/err")")
    [ ! -s "$tmp/out" ] || failures+=("abdctl $*: printed on stdout: $(head -c 200 "$tmp/out")")
}

# 0: OK answers.
expect 0 -s "$ctl" status
expect 0 --socket="$ctl" status
expect 0 -s "$ctl" flush
expect 0 -s "$ctl" flush 5
expect 0 -s "$ctl" mode sync && grep -qx 'mode: sync' "$tmp/out" ||
    failures+=("mode sync did not print 'mode: sync'")
expect 0 -s "$ctl" mode async && grep -qx 'mode: async' "$tmp/out" ||
    failures+=("mode async did not print 'mode: async'")
expect 0 --help && grep -q 'Usage' "$tmp/out" || failures+=("--help printed no usage")
expect 0 -h
expect 0 --version && grep -q '^abdctl ' "$tmp/out" || failures+=("--version printed no version")

# 1: the filter answered ERR.
expect_err 1 'expected sync or async' -s "$ctl" mode bogus
expect_err 1 'unknown command'        -s "$ctl" frobnicate
expect_err 1 'unknown command'        -s "$ctl" mode
expect_err 1 'unknown command'        -s "$ctl" status extra
expect_err 1 'timeout'                -s "$ctl" flush abc
expect_err 1 'timeout'                -s "$ctl" flush 86401
expect_err 1 'timeout'                -s "$ctl" flush -1
# Strictly decimal: no wrap-around to 0, no suffix, sign or hex.
expect_err 1 'timeout'                -s "$ctl" flush 4294967296
expect_err 1 'timeout'                -s "$ctl" flush 18446744073709551616
expect_err 1 'timeout'                -s "$ctl" flush 5abc
expect_err 1 'timeout'                -s "$ctl" flush +5
expect_err 1 'timeout'                -s "$ctl" flush 0x10
# An empty word is not a missing one.
expect_err 1 'malformed'              -s "$ctl" flush ''
expect_err 1 'malformed'              -s "$ctl" status ''
expect_err 1 'malformed'              -s "$ctl" status 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
expect_err 1 'expected sync or async' -s "$ctl" --json mode bogus
# 1: flush timed out: dirty data, a slow lower device, no time given.
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
for i in range(4):
    h.pwrite(os.urandom(65536), i * 262144)
h.shutdown()' || fail "writes failed"
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "nothing dirty"
expect_err 1 'timed out' -s "$ctl" flush 0

# 2: usage errors and requests that cannot be made.
expect_err 2 'Usage'
expect_err 2 'Usage'    --json
expect_err 2 'Usage'    -s "$ctl" --json --raw status
expect_err 2 'Usage'    -s "$ctl" status --progress
expect_err 2 'Usage'    -s "$ctl" flush --progress --json
expect_err 2 'interval' -s "$ctl" flush --progress --interval=0
expect_err 2 'interval' -s "$ctl" flush --progress --interval
expect_err 2 'Usage'    -s "$ctl" metrics extra
expect_err 2 'Usage'    store-info
expect_err 2 'Usage'    -s "$ctl"
expect_err 2 'Usage'    -s
expect_err 2 'Usage'    --bogus -s "$ctl" status
expect_err 2 'No such file' -s "$tmp/no-such.sock" status
touch "$tmp/plain-file"
expect_err 2 'plain-file' -s "$tmp/plain-file" status
# A socket nobody listens on (bound, then closed, not removed).
"$PY" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
    "$tmp/dead.sock"
expect_err 2 'dead.sock' -s "$tmp/dead.sock" status
expect_err 2 'too long' -s "$tmp/$(printf 'x%.0s' {1..120}).sock" status
expect_err 2 'too long' -s "$ctl" status "$(printf 'y%.0s' {1..1100})"

# Drained: `flush 5` returns 0 (the data is 4 lower writes of 200 ms).
expect 0 -s "$ctl" flush 5 ||
    failures+=("flush 5 did not drain: $(st "$ctl" dirty_bytes) bytes dirty")
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || failures+=("dirty after flush 5")

# Text and JSON agree.  Some dirty data again, never written back (so the
# writeback rate is constant); only oldest_dirty_age_ms moves.
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
h.pwrite(os.urandom(10000), 5000); h.zero(65536, 1 << 20); h.trim(8192, 2 << 20)
h.shutdown()' || fail "writes failed"
sleep 6      # let the writeback rate of the earlier flush age out
"$ABDCTL" -s "$ctl" --raw status > "$tmp/text" || fail "--raw status failed"
"$ABDCTL" -s "$ctl" status --raw > "$tmp/text2" || fail "status --raw failed"
# (Only oldest_dirty_age_ms moves.)
diff <(grep -v ^oldest "$tmp/text") <(grep -v ^oldest "$tmp/text2") >/dev/null ||
    failures+=("--raw before and after status differ")
"$ABDCTL" -s "$ctl" --json status > "$tmp/json1" || fail "--json status failed"
"$ABDCTL" -s "$ctl" -j status > "$tmp/json2" || fail "-j status failed"
"$ABDCTL" -s "$ctl" status --json > "$tmp/json3" || fail "status --json failed"
"$ABDCTL" -s "$ctl" --json mode async > "$tmp/json4" || fail "--json mode failed"
"$PY" - "$tmp" <<'EOF' || failures+=("text and JSON status disagree")
import json, sys
tmp = sys.argv[1]
fields = """mode mode_reason draining sync_writes max_dirty_bytes dirty_bytes
dirty_data_bytes dirty_ranges dirty_entries oldest_dirty_age_ms
writes_in_flight bytes_in_flight written_back_bytes written_back_requests
lower_flushes writeback_rate_bytes_per_sec drain_rate_bytes_per_sec
drain_estimate_seconds max_drain_seconds drain_budget_bytes
lower_write_errors lower_flush_errors failed_bytes client_write_requests
client_written_bytes space_waits drain_budget_waits store_file
store_file_dirty_bytes""".split()
strings = {"mode", "mode_reason", "sync_writes", "store_file"}
text = {}
for line in open(tmp + "/text").read().splitlines():
    k, sep, v = line.partition(": ")
    assert sep and k not in text, "bad status line %r" % line
    text[k] = v
assert list(text) == fields, "text fields: %s" % list(text)
for name in ("json1", "json2", "json3"):
    raw = open("%s/%s" % (tmp, name)).read()
    j = json.loads(raw)
    assert isinstance(j, dict) and list(j) == fields, "%s fields: %s" % (name, list(j))
    for k in fields:
        if k in strings:
            assert j[k] == text[k], (name, k, j[k], text[k])
        else:
            assert type(j[k]) is int, (name, k, j[k])
            if k == "oldest_dirty_age_ms":
                assert j[k] >= int(text[k]), (name, k)
            else:
                assert j[k] == int(text[k]), (name, k, j[k], text[k])
assert text["mode"] == "async" and text["mode_reason"] == "control", text
assert int(text["dirty_bytes"]) == 3 * 4096 + 65536 + 8192, text["dirty_bytes"]
assert int(text["dirty_data_bytes"]) == 3 * 4096, text["dirty_data_bytes"]
assert int(text["dirty_entries"]) == 5 and int(text["dirty_ranges"]) == 3, text
assert int(text["max_dirty_bytes"]) == 256 << 20
assert int(text["lower_write_errors"]) == 0 and int(text["failed_bytes"]) == 0
# The drain estimate uses the rate measured while the writers were busy
# (the flushes above), not the recent rate, which is 0 by now: 5 entries
# of 4 KiB cost (3 data blocks, 2 ranges) at that rate.
rate = int(text["drain_rate_bytes_per_sec"])
assert int(text["writeback_rate_bytes_per_sec"]) == 0, text
assert rate > 0, "no drain rate measured"
want = -(-5 * 4096 // rate)
assert abs(int(text["drain_estimate_seconds"]) - want) <= 1, (text, want)
assert int(text["max_drain_seconds"]) == 0 and int(text["drain_budget_bytes"]) == 0
assert int(text["drain_budget_waits"]) == 0, text
assert text["store_file"] == "" and int(text["store_file_dirty_bytes"]) == 0
m = json.loads(open(tmp + "/json4").read())
assert m == {"mode": "async", "mode_reason": "control"}, m
EOF

# (Drain first: over the delay filter the exit drain cannot write; see
# test-async-shutdown.sh.)
expect 0 -s "$ctl" flush 30
stop_nbdkit "$pid"
# After nbdkit exits the socket is gone: 2.
expect_err 2 'ctl.sock' -s "$ctl" status

if [ ${#failures[@]} -gt 0 ]; then
    for f in "${failures[@]}"; do echo "$0: FAIL: $f" >&2; done
    fail "${#failures[@]} checks failed"
fi
echo "$0: OK"
