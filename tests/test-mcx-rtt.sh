#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# memcached-ext/mcx-rtt (the raw round trips behind scripts/bench's limit
# rows) against real memcached servers, one on a free loopback port and
# one on a Unix socket: its JSON says every timed get hit, every time is
# positive and ordered (median <= p99), the counts are those asked for,
# and it removed its keys; a refused and a stopped server fail with exit
# 1 (the stopped one within its deadline); bad arguments exit 2.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires memcached python3
rtt=$abs_top_builddir/memcached-ext/mcx-rtt
[ -x "$rtt" ] || fail "$rtt is not built"

# Bad arguments: exit 2 and a message, before any connection.
bad_args ()
{
    local status=0
    "$rtt" "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
    [ "$status" = 2 ] || fail "mcx-rtt $*: exit $status, not 2"
    grep -q "mcx-rtt: " "$tmp/err" || fail "mcx-rtt $*: no message"
}
bad_args
bad_args --count 0 127.0.0.1:1
bad_args --count 12x 127.0.0.1:1
bad_args --count -5 127.0.0.1:1
bad_args --depth 0 127.0.0.1:1
bad_args --block 2000000 127.0.0.1:1
bad_args --timeout '' 127.0.0.1:1
bad_args --no-such-option 127.0.0.1:1
bad_args 127.0.0.1:1 -n
bad_args localhost
bad_args 127.0.0.1:
bad_args 127.0.0.1:65536
bad_args 127.0.0.1:80x
"$rtt" --help >"$tmp/out" || fail "--help: exit $?"
grep -q '^Usage: mcx-rtt' "$tmp/out" || fail "--help: no usage"

start_memcached tcp
tcp_port=$mc_port tcp_pid=$mc_pid
memcached -s "$tmp/mc.sock" -u root -m 64 >"$tmp/memcached-unix.log" 2>&1 &
unix_pid=$!
memcached_at_exit "$unix_pid"
wait_for 10 test -S "$tmp/mc.sock" || fail "memcached on a Unix socket did not start"

# Both servers in one run; small counts, the defaults' shape (4 KiB, 16
# in flight, 16 keys per multi-get).  timeout: a deadline for the whole
# run on a busy machine (each request has its own, --timeout).
count=300
timeout 120 "$rtt" --json --count "$count" "127.0.0.1:$tcp_port" \
    "$tmp/mc.sock" >"$tmp/rtt.json" || fail "mcx-rtt --json: exit $?"
python3 - "$tmp/rtt.json" "$count" "127.0.0.1:$tcp_port" "$tmp/mc.sock" <<'EOF' ||
import json, sys
d = json.load(open(sys.argv[1]))
count = int(sys.argv[2])
assert "error" not in d, d
assert [s["server"] for s in d["servers"]] == sys.argv[3:], d
for s in d["servers"]:
    assert s["block"] == 4096 and s["count"] == count, s
    for name, depth, keys in (("depth1", 1, 1), ("inflight", 16, 1),
                              ("multiget", 1, 16)):
        m = s[name]
        assert m["depth"] == depth and m["keys_per_request"] == keys, (name, m)
        assert m["requests"] == count and m["gets"] == count * keys, (name, m)
        assert m["hits"] == m["gets"], ("not every get hit", name, m)
        for k in ("median_us", "p99_us", "mean_us", "interval_us"):
            # > 0 and below a second: a time, not garbage
            assert 0 < m[k] < 1e6, (name, k, m)
        assert m["median_us"] <= m["p99_us"], (name, m)
EOF
    fail "the JSON output is not sane: $(cat "$tmp/rtt.json")"

# It removed its keys: memcached holds no item.
items ()
{
    python3 - "$@" <<'EOF'
import socket, sys
if len(sys.argv) == 2:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
else:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)
s.sendall(b"stats\r\n")
data = b""
while not data.endswith(b"END\r\n"):
    data += s.recv(65536)
print([l.split()[2] for l in data.decode().splitlines()
       if l.startswith("STAT curr_items ")][0])
EOF
}
[ "$(items 127.0.0.1 "$tcp_port")" = 0 ] || fail "keys left on the TCP server"
[ "$(items "$tmp/mc.sock")" = 0 ] || fail "keys left on the Unix socket server"

# The text output: a table per server, and its hit line.
timeout 120 "$rtt" --count 100 --depth 4 --batch 8 --block 65536 \
    "127.0.0.1:$tcp_port" >"$tmp/rtt.txt" || fail "mcx-rtt (text): exit $?"
grep -q "^127.0.0.1:$tcp_port: 65536-byte values, 100 timed requests each" \
    "$tmp/rtt.txt" || fail "text output: no header: $(cat "$tmp/rtt.txt")"
grep -Eq '^  mg, 4 in flight, 4 conns +[0-9]+\.[0-9]' "$tmp/rtt.txt" ||
    fail "text output: no in-flight line: $(cat "$tmp/rtt.txt")"
grep -q '^  hits: 1000 of 1000 timed gets$' "$tmp/rtt.txt" ||
    fail "text output: hits: $(cat "$tmp/rtt.txt")"

# A value the server will not store (1 MiB with its key is over
# memcached's default item size): exit 1, not a measurement of misses.
status=0
"$rtt" --count 10 --block 1048576 "127.0.0.1:$tcp_port" 2>"$tmp/err" >/dev/null ||
    status=$?
[ "$status" = 1 ] || fail "value too large: exit $status, not 1"
# (memcached answers SERVER_ERROR, or closes the connection.)
grep -q "127.0.0.1:$tcp_port: storing the keys: " "$tmp/err" ||
    fail "value too large: $(cat "$tmp/err")"

# A refused connection: exit 1, says which server.
port=$(free_port)
status=0
"$rtt" --count 10 "127.0.0.1:$port" 2>"$tmp/err" >/dev/null || status=$?
[ "$status" = 1 ] || fail "refused server: exit $status, not 1"
grep -q "127.0.0.1:$port: connect" "$tmp/err" || fail "refused server: $(cat "$tmp/err")"

# A stopped server accepts connections but never answers: exit 1 once
# the first batch's deadline passes, not later.
kill -STOP "$tcp_pid"
cleanup_fn kill -CONT "$tcp_pid"
status=0
start=$(date +%s%N)
timeout 60 "$rtt" --count 10 --timeout 200 "127.0.0.1:$tcp_port" \
    2>"$tmp/err" >/dev/null || status=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "$tcp_pid"
[ "$status" = 1 ] || fail "stopped server: exit $status, not 1"
grep -q "timed out" "$tmp/err" || fail "stopped server: $(cat "$tmp/err")"
# The store batch times out after 200 ms; no deletes are tried after a
# failure (the keys expire).  2 s of slack for a loaded machine.
[ "$ms" -lt 2200 ] || fail "stopped server: took $ms ms with --timeout 200"
echo "$0: OK"
