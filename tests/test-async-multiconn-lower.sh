#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: multi-conn only when it is true.  Over a lower
# device that does not advertise multi-conn (an inner nbdkit with
# multi-conn-mode=disable, reached through the nbd plugin), in sync mode:
# - the filter does not advertise multi-conn (nbdinfo, can_multi_conn());
#   and the reason is real: connection A's write goes through A's own
#   lower connection, and connection B's flush does not flush it (the
#   inner server's log shows no Flush on that connection);
# - with nbdkit's multi-conn filter below it (emulate), the filter does
#   advertise multi-conn, and B's flush reaches A's lower connection.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdinfo

ops=$tmp/inner-ops.log
async_start inner --filter=log --filter=multi-conn memory 64M \
    multi-conn-mode=disable logfile="$ops"
inner=$sock
[ "$(nbdinfo --json "$uri" | "$PY" -c 'import json, sys
print(json.load(sys.stdin)["exports"][0]["can_multi_conn"])')" = False ] ||
    fail "test bug: the inner nbdkit advertises multi-conn"

# ab.py EXPECT OFFSET: A writes 64K at OFFSET (sync mode: through A's
# lower connection), B flushes; then the inner log must show a Flush on
# the lower connection that carried the write, after it, iff EXPECT is
# "flushed".  Both clients see can_multi_conn() == (EXPECT == flushed).
cat > "$tmp/ab.py" <<'EOF'
import os, re, sys
from abdtest.workload import connect
expect, off = sys.argv[1] == "flushed", int(sys.argv[2])
a = connect()
b = connect()
for h in (a, b):
    if h.can_multi_conn() != expect:
        sys.exit("can_multi_conn() is %r" % h.can_multi_conn())
a.pwrite(os.urandom(65536), off)
b.flush()
lines = open(os.environ["OPS"]).read().splitlines()
w = [i for i, l in enumerate(lines)
     if re.search(r" Write id=\d+ offset=%#x count=0x10000 " % off, l)]
if len(w) != 1:
    sys.exit("%d inner writes at %#x, not 1" % (len(w), off))
conn = re.search(r"connection=(\d+) ", lines[w[0]]).group(1)
flushed = any(re.search(r"connection=%s Flush " % conn, l)
              for l in lines[w[0]:])
if flushed != expect:
    sys.exit("B's flush %s A's lower connection %s" %
             ("did not reach" if expect else "reached", conn))
a.shutdown(); b.shutdown()
EOF
export OPS=$ops

# The lower device as it is: no multi-conn.
async_start plain --filter="$ASYNC_FILTER" nbd socket="$inner" async-mode=sync
nbdinfo --json "$uri" > "$tmp/info.json" || fail "nbdinfo failed"
"$PY" -c '
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["can_multi_conn"] is False, "can_multi_conn is %r" % e["can_multi_conn"]
' "$tmp/info.json" || fail "multi-conn advertised over a lower device without it"
export uri
"$PY" "$tmp/ab.py" not $((16 << 20)) || fail "without multi-conn"
stop_nbdkit "$pid"

# nbdkit's multi-conn filter below makes the lower device multi-conn.
async_start emulated --filter="$ASYNC_FILTER" --filter=multi-conn \
    nbd socket="$inner" async-mode=sync multi-conn-mode=emulate
export uri
"$PY" "$tmp/ab.py" flushed $((32 << 20)) || fail "with the multi-conn filter"
stop_nbdkit "$pid"
echo "$0: OK"
