#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# memcached-ext/abd-memcached.conf: memcached started by the command line
# of scripts/systemd/abd-memcached.service, with these options, gives at
# least 97% of the chunk bytes its items occupy to block data,
# measured from memcached's own counters ("stats slabs", "stats items",
# "stats") after a
# real filesystem image was read through the memcache filter; the same
# image in a default memcached is shown next to it.  The data read back
# from the cache is byte-exact.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
PATH=$PATH:/usr/sbin:/sbin
requires mkfs.ext4

conf=$abs_top_srcdir/memcached-ext/abd-memcached.conf
opts=$(sed -n 's/^ABD_MEMCACHED_OPTIONS=//p' "$conf")
[ -n "$opts" ] || fail "no ABD_MEMCACHED_OPTIONS in $conf"

# A realistic image: ext4 holding real files (headers: text of all
# sizes), its metadata, and free space.
mkdir "$tmp/root"
for d in linux openssl x86_64-linux-gnu/bits; do
    [ -d "/usr/include/$d" ] && cp -r "/usr/include/$d" "$tmp/root/"
done
cp -r "$abs_top_srcdir/man" "$abs_top_srcdir/filters" "$tmp/root/"
truncate -s 64M "$tmp/disk.img"
mkfs.ext4 -q -F -d "$tmp/root" "$tmp/disk.img"

# measure NAME SERVER: fill the memcached at SERVER (HOST:PORT or a Unix
# socket) through the filter with the whole image, read it back from the
# cache, and print "SHARE ITEM_SHARE YIELDS": block bytes and item bytes
# over the bytes of the chunks the items occupy, and memcached's
# conn_yields.
measure ()
{
    local name=$1 server=$2 ctl=$tmp/$1.ctl
    # memcache-sequential-cutoff=0: the whole image must be stored (this
    # measures memcached's memory per item, not what the filter keeps of
    # a scan, which is test-memcache-scan.sh's).
    start_nbdkit "$name" --filter="$MEMCACHE_FILTER" file "$tmp/disk.img" \
        memcache-servers="$server" memcache-id="tuned-$name" \
        memcache-timeout=500 memcache-control="$ctl" \
        memcache-sequential-cutoff=0 >&2
    nbdcopy --no-extents --request-size=1048576 "$uri" "$tmp/$name.1" >&2
    # The fills are stored in the background: all of them before the
    # second read (the fill queue holds 64 MiB, the whole image).
    mc_filled "$ctl" >&2
    [ "$(mc_status "$ctl" "d['fills_dropped']")" -eq 0 ] ||
        fail "$name: the fill queue dropped fills of a 64 MiB image"
    nbdcopy --no-extents --request-size=1048576 "$uri" "$tmp/$name.2" >&2
    cmp "$tmp/disk.img" "$tmp/$name.1" >&2 || fail "$name: cold read differs"
    cmp "$tmp/disk.img" "$tmp/$name.2" >&2 || fail "$name: warm read differs"
    [ "$(mc_status "$ctl" "d['misses']")" -eq 16384 ] ||
        fail "$name: expected 16384 misses (one per block), got" \
             "$(mc_status "$ctl" "d['misses']")"
    [ "$(mc_status "$ctl" "d['hits']")" -eq 16384 ] ||
        fail "$name: expected 16384 hits on the second read, got" \
             "$(mc_status "$ctl" "d['hits']")"
    stop_nbdkit "$pid"
    "$PY" - "$server" "$name" <<'EOF'
import socket, sys
server, name = sys.argv[1], sys.argv[2]

def stats(arg):
    if server.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(server)
    else:
        host, port = server.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(("stats %s\r\n" % arg).encode())
    buf = b""
    while not buf.endswith(b"END\r\n"):
        chunk = s.recv(65536)
        assert chunk, "memcached closed the connection"
        buf += chunk
    s.close()
    return dict(l.split()[1:3] for l in buf.decode().splitlines()
                if l.startswith("STAT "))

general, slabs, per_class = stats(""), stats("slabs"), stats("items")
items = int(general["curr_items"])
assert items == 16384, "%s: %d items, expected 16384" % (name, items)
chunk_bytes = requested = 0
classes = []
for k, v in slabs.items():
    if k.endswith(":used_chunks") and int(v) > 0:
        cls = k.split(":")[0]
        size = int(slabs[cls + ":chunk_size"])
        chunk_bytes += int(v) * size
        requested += int(per_class["items:%s:mem_requested" % cls])
        classes.append("%s x %d B" % (v, size))
block_bytes = items * 4096
malloced = int(slabs["total_malloced"])
print("%s: %d blocks in %s: block data %d of %d chunk bytes = %.2f%%, "
      "items %.2f%%, of the %d bytes of slab pages %.2f%%, conn_yields %s"
      % (name, items, ", ".join(classes), block_bytes, chunk_bytes,
         100.0 * block_bytes / chunk_bytes, 100.0 * requested / chunk_bytes,
         malloced, 100.0 * block_bytes / malloced, general["conn_yields"]),
      file=sys.stderr)
print("%.4f %.4f %s" % (block_bytes / chunk_bytes, requested / chunk_bytes,
                        general["conn_yields"]))
EOF
}

# A default memcached (-m 256: nothing is evicted, the image is 64 MiB).
start_memcached default -m 256
# measure runs in this shell (not in a <(...) subshell), so that a
# failure stops the test and its nbdkit is stopped by the test's cleanup.
measure default "127.0.0.1:$mc_port" >"$tmp/default.share"
read -r default_share _ default_yields <"$tmp/default.share"

# The unit's ExecStart, continuation lines joined, with its runtime
# directory and its EnvironmentFile pointed at this test's.
unit=$abs_top_srcdir/scripts/systemd/abd-memcached.service
grep -qx 'EnvironmentFile=/usr/share/abd/abd-memcached.conf' "$unit" ||
    fail "abd-memcached.service does not read /usr/share/abd/abd-memcached.conf"
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" |
             sed 's/\\$//' | tr '\n' ' ' | sed 's/^ExecStart=//')
case $exec_start in
    /usr/bin/memcached\ *-s\ /run/abd-memcached/memcached.sock\ *) ;;
    *) fail "abd-memcached.service: unexpected ExecStart: $exec_start" ;;
esac
mkdir "$tmp/run"
cmd=${exec_start//\/run\/abd-memcached/$tmp/run}
# systemd splits $NAME into words: so does eval.
ABD_MEMCACHED_OPTIONS=$opts
[ "$(id -u)" -ne 0 ] || cmd+=" -u root"   # systemd runs it as memcache
eval "set -- $cmd"
"$@" >"$tmp/memcached-unit.log" 2>&1 &
cleanup_fn kill_wait $! 10
wait_for 10 test -S "$tmp/run/memcached.sock" ||
    fail "memcached from the unit's command line did not start: $(cat "$tmp/memcached-unit.log")"
measure tuned "$tmp/run/memcached.sock" >"$tmp/tuned.share"
read -r tuned_share tuned_item_share tuned_yields <"$tmp/tuned.share"
echo "payload share: default memcached $default_share," \
     "abd-memcached.service $tuned_share (items $tuned_item_share)"

"$PY" -c "import sys; sys.exit(0 if $tuned_share >= 0.97 else 1)" ||
    fail "tuned memcached: block data is $tuned_share of the chunk bytes, below 0.97"
"$PY" -c "import sys; sys.exit(0 if $tuned_share > $default_share else 1)" ||
    fail "tuned memcached ($tuned_share) is no better than the default ($default_share)"
# 1 MiB reads are batches of 256 gets and a no-op: -R 512 serves each
# without a yield (measured: none), where -R 20 yields 12 times a batch.
# (Not asserted as 0: a client that pipelined two batches on one
# connection could make one yield now and then.)
echo "conn_yields: default memcached $default_yields, tuned $tuned_yields"
[ $((tuned_yields * 10)) -lt "$default_yields" ] ||
    fail "tuned memcached yielded $tuned_yields times, default $default_yields"
echo "$0: OK"
