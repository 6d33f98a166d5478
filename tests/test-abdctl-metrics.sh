#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl metrics: the Prometheus text format, checked by a strict parser
# here (every line a comment, HELP, TYPE or sample of the exposition
# grammar; HELP and TYPE once per metric, before its samples, and no
# samples of another metric between them; no series twice; counters end
# in _total; label values escaped) and by `promtool check metrics` when
# it is installed.  Values are the filters' own (dirty bytes, per-server
# hits with server="ADDRESS"); both layers by default; a layer that does
# not answer is abd_up 0, the other still reported, exit 2.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
source "$abs_top_srcdir/tests/test-abdctl-helpers.sh"

abdctl_stack_start
export uri
nbd_write 0 $(( 1 << 20 ))
nbd_read $(( 8 << 20 )) $(( 1 << 20 ))
mc_filled "$mctl"
nbd_read $(( 8 << 20 )) $(( 1 << 20 ))

in_run "$tmp/run" "$ABDCTL" metrics > "$tmp/both.prom" || fail "metrics failed"
"$ABDCTL" -s "$actl" --json status > "$tmp/a.json" || fail "async status failed"
"$ABDCTL" -s "$mctl" --json status > "$tmp/m.json" || fail "memcache status failed"

cat > "$tmp/check.py" <<'EOF2'
import json, re, sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|NaN|Inf)"
SAMPLE = re.compile(r"(%s)(\{(?:%s(?:,%s)*)?\})? (%s)(?: -?\d+)?$"
                    % (NAME, LABEL, LABEL, VALUE))
HELP = re.compile(r"# HELP (%s) \S.*$" % NAME)
TYPE = re.compile(r"# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)

def parse(path):
    """{(name, labels): value}, {name: type}; asserts the format."""
    text = open(path).read()
    assert text.endswith("\n"), "no final newline"
    helps, types, series, done = {}, {}, {}, set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "%s:%d: %r" % (path, n, line)
        m = HELP.match(line)
        if m:
            name = m.group(1)
            assert name not in helps and name not in done, "second HELP " + where
            if current and current != name:
                done.add(current)
            helps[name] = True
            current = name
            continue
        m = TYPE.match(line)
        if m:
            name = m.group(1)
            assert name == current and name not in types, "TYPE not after its HELP " + where
            types[name] = m.group(2)
            continue
        assert not line.startswith("#"), "bad comment " + where
        m = SAMPLE.match(line)
        assert m, "not a sample " + where
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        assert name == current, "sample outside its metric's block " + where
        assert name in types, "sample before TYPE " + where
        if types[name] == "counter":
            assert name.endswith("_total"), "counter without _total " + where
            assert value >= 0, "negative counter " + where
        assert (name, labels) not in series, "duplicate series " + where
        series[(name, labels)] = value
    return series, types

series, types = parse(sys.argv[1])
a = json.load(open(sys.argv[2]))
m = json.load(open(sys.argv[3]))
assert types["abd_async_dirty_bytes"] == "gauge"
assert series[("abd_async_dirty_bytes", "")] == a["dirty_bytes"] == 1 << 20
assert series[("abd_async_max_dirty_bytes", "")] == a["max_dirty_bytes"]
assert series[("abd_async_written_back_bytes_total", "")] == a["written_back_bytes"]
assert types["abd_memcache_hits_total"] == "counter"
assert series[("abd_memcache_hits_total", "")] == m["hits"] == 256
assert series[("abd_memcache_misses_total", "")] == m["misses"]
assert series[('abd_up', '{layer="async"}')] == 1
assert series[('abd_up', '{layer="memcache"}')] == 1
servers = [v for k, v in m["servers"].items()]
assert len(servers) == 2
for s in servers:
    label = '{server="%s"}' % s["address"]
    assert series[("abd_memcache_server_hits_total", label)] == s["hits"], s
    assert series[("abd_memcache_server_requests_total", label)] == s["ops"], s
    assert series[("abd_memcache_server_up", label)] == 1, s
    assert abs(series[("abd_memcache_server_latency_max_seconds", label)]
               - s["latency_max_us"] / 1e6) < 1e-9, s
EOF2
"$PY" "$tmp/check.py" "$tmp/both.prom" "$tmp/a.json" "$tmp/m.json" ||
    { cat "$tmp/both.prom"; fail "metrics of both layers"; }
if command -v promtool >/dev/null; then
    promtool check metrics < "$tmp/both.prom" ||
        fail "promtool check metrics found problems"
else
    echo "$0: promtool not installed: only the parser here checked the format"
fi

# The parser itself refuses what it must (else it would prove nothing).
bad ()
{
    printf "$1" > "$tmp/bad.prom"
    ! "$PY" "$tmp/check.py" "$tmp/bad.prom" "$tmp/a.json" "$tmp/m.json" \
        2>/dev/null || fail "the parser accepted: $1"
}
bad '# HELP x_total X.\n# TYPE x_total counter\nx_total 1\nx_total 2\n'
bad '# HELP x X.\n# TYPE x counter\nx 1\n'
bad '# TYPE x gauge\nx 1\n'
bad '# HELP x X.\n# TYPE x gauge\nx{a="b\\"} 1\n'
bad '# HELP x X.\n# TYPE x gauge\nx 1\n# HELP y Y.\n# TYPE y gauge\ny 1\nx 2\n'

# A layer that does not answer: abd_up 0, the other one still there.
mkdir -p "$tmp/half/abd"
ln -s "$actl" "$tmp/half/abd/async.ctl"
# A stale socket (nbdkit killed): there, but nothing listens.
"$PY" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
    "$tmp/half/abd/memcache.ctl"
rc=0; in_run "$tmp/half" "$ABDCTL" metrics > "$tmp/half.prom" 2>"$tmp/err" || rc=$?
[ $rc -eq 2 ] || fail "metrics with memcache gone: exit $rc"
grep -qx 'abd_up{layer="memcache"} 0' "$tmp/half.prom" || fail "no abd_up 0 for memcache"
grep -qx 'abd_async_dirty_bytes 1048576' "$tmp/half.prom" || { cat "$tmp/half.prom" "$tmp/err"; fail "no async metrics"; }
! grep -q '^abd_memcache' "$tmp/half.prom" || fail "memcache metrics without an answer"
[ -z "$(command -v promtool)" ] || promtool check metrics < "$tmp/half.prom" ||
    fail "promtool: half"

"$ABDCTL" -s "$actl" flush 30 || fail "flush failed"
stop_nbdkit "$pid"
echo "$0: OK"
