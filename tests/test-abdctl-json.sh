#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl status against the async filter: `--json` output (--json, -j,
# status --json) is valid JSON with the same fields, in the same order,
# and the same numbers as the --raw text (--raw before or after status);
# every status field is present and says what was done: the dirty bytes,
# data bytes, entries and ranges of a write, a zero and a trim, the mode,
# and a drain estimate from the rate measured by an earlier flush.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-abdctl-exit-helpers.sh"

# A drain rate: some dirty data, flushed.
dirty_blocks
expect 0 -s "$ctl" flush 5 || fail "flush 5 did not drain"
# The mode as set by the control channel (mode_reason "control").
"$ABDCTL" -s "$ctl" mode async >/dev/null || fail "abdctl mode async failed"

# Text and JSON agree.  Some dirty data again, never written back (so the
# writeback rate is constant); only oldest_dirty_age_ms moves.
"$PY" -c '
import os
from abdtest.workload import connect
h = connect()
h.pwrite(os.urandom(10000), 5000); h.zero(65536, 1 << 20); h.trim(8192, 2 << 20)
h.shutdown()' || fail "writes failed"
# Let the writeback rate of the earlier flush age out (it covers the last
# few seconds): wait until status says 0.
recent_rate_zero () { [ "$(status_field "$ctl" writeback_rate_bytes_per_sec)" = 0 ]; }
wait_for 20 recent_rate_zero || fail "the writeback rate never fell to 0"
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
store_file_dirty_bytes store_flush store_commits store_commit_failed""".split()
strings = {"mode", "mode_reason", "sync_writes", "store_file", "store_flush"}
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
# One extent of the 3 written blocks, and the 2 ranges.
assert int(text["dirty_entries"]) == 3 and int(text["dirty_ranges"]) == 3, text
assert int(text["max_dirty_bytes"]) == 256 << 20
assert int(text["lower_write_errors"]) == 0 and int(text["failed_bytes"]) == 0
# The drain estimate uses the rate measured while the writers were busy
# (the flushes above), not the recent rate, which is 0 by now: 5 blocks
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

abdctl_stop
abdctl_report
echo "$0: OK"
