#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: every bad parameter is refused at start with a
# message naming the problem, and a good set of parameters starts (so the
# refusals are not caused by something else).  No memcached is needed:
# servers are not contacted at start.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit

good=(memcache-servers=127.0.0.1:1,/tmp/mc.sock,[::1]:2 memcache-id=x)

# refused MESSAGE-PATTERN PARAMS...: nbdkit must fail and say MESSAGE.
refused ()
{
    local pattern=$1; shift
    rm -f "$tmp/nbd.sock"
    if nbdkit -U "$tmp/nbd.sock" --filter="$MEMCACHE_FILTER" null size=1M "$@" \
            --run true >"$tmp/out" 2>&1; then
        fail "accepted: $*"
    fi
    grep -q -- "$pattern" "$tmp/out" ||
        fail "refused '$*' without saying '$pattern': $(cat "$tmp/out")"
}

nbdkit -U "$tmp/nbd.sock" --filter="$MEMCACHE_FILTER" null size=1M "${good[@]}" \
    memcache-block-size=64K memcache-timeout=10 memcache-retry=50 \
    memcache-ttl=0 memcache-write-policy=invalidate memcache-protocol=text \
    memcache-control="$tmp/ctl.sock" memcache-sequential-cutoff=64M --run true ||
    fail "good parameters refused"
for cutoff in 0 4096 1T; do
    rm -f "$tmp/nbd.sock"
    nbdkit -U "$tmp/nbd.sock" --filter="$MEMCACHE_FILTER" null size=1M \
        "${good[@]}" memcache-sequential-cutoff=$cutoff --run true ||
        fail "memcache-sequential-cutoff=$cutoff refused"
done

refused "memcache-servers=HOST:PORT,... is required" memcache-id=x
refused "memcache-id=STRING is required" memcache-servers=127.0.0.1:1
refused "memcache-id must not be empty" memcache-servers=127.0.0.1:1 memcache-id=
refused "must be 'meta' or 'text'" "${good[@]}" memcache-protocol=binary

# Strings that abdctl status prints cannot hold control characters (a
# newline would forge status lines).
refused "memcache-id: control character 0x0a at byte 1" \
    memcache-servers=127.0.0.1:1 memcache-id=$'a\nOK'
refused "memcache-id: control character 0x1b at byte 0" \
    memcache-servers=127.0.0.1:1 memcache-id=$'\e[2J'
refused "memcache-id: control character 0x7f" \
    memcache-servers=127.0.0.1:1 memcache-id=$'x\x7f'
refused "memcache-servers: control character 0x0d" \
    memcache-id=x memcache-servers=$'h\r:1'
refused "expected HOST:PORT" memcache-id=x memcache-servers=localhost
refused "expected HOST:PORT" memcache-id=x memcache-servers=:11211
refused "port must be a number from 1 to 65535" memcache-id=x memcache-servers=h:0
refused "port must be a number from 1 to 65535" memcache-id=x memcache-servers=h:65536
refused "port must be a number from 1 to 65535" memcache-id=x memcache-servers=h:12ab
refused "port must be a number from 1 to 65535" memcache-id=x memcache-servers=h:
refused "empty entry" memcache-id=x memcache-servers=a:1,,b:2
refused "empty entry" memcache-id=x memcache-servers=a:1,
refused "empty entry" memcache-id=x memcache-servers=
refused "listed twice" memcache-id=x memcache-servers=a:1,b:2,a:1
refused "in brackets" memcache-id=x memcache-servers=::1:11211
refused "expected \[IPV6\]:PORT" memcache-id=x memcache-servers=[::1:11211
# memcache-servers-file: the one list when given.
printf '# only comments\n\n' > "$tmp/servers-empty"
printf 'a:1 b:2\n' > "$tmp/servers-two"
printf 'a:1\nh:0\n' > "$tmp/servers-port"
refused "exclude each other" memcache-id=x memcache-servers=a:1 \
    memcache-servers-file="$tmp/servers-two"
refused "memcache-servers-file=servers: must be an absolute path" \
    memcache-id=x memcache-servers-file=servers
refused "No such file" memcache-id=x memcache-servers-file="$tmp/none"
refused "no server in it" memcache-id=x memcache-servers-file="$tmp/servers-empty"
refused "one server per line" memcache-id=x memcache-servers-file="$tmp/servers-two"
refused "port must be a number" memcache-id=x memcache-servers-file="$tmp/servers-port"

refused "power of 2 from 512 to 1048576" "${good[@]}" memcache-block-size=1000
refused "power of 2 from 512 to 1048576" "${good[@]}" memcache-block-size=256
refused "power of 2 from 512 to 1048576" "${good[@]}" memcache-block-size=2M
refused "memcache-block-size" "${good[@]}" memcache-block-size=big

refused "from 1 to 60000 milliseconds" "${good[@]}" memcache-timeout=0
refused "from 1 to 60000 milliseconds" "${good[@]}" memcache-timeout=60001
refused "memcache-timeout" "${good[@]}" memcache-timeout=-1
refused "memcache-timeout" "${good[@]}" memcache-timeout=5ms
refused "from 1 to 3600000 milliseconds" "${good[@]}" memcache-retry=0
refused "from 0 to 2592000 seconds" "${good[@]}" memcache-ttl=2592001
refused "memcache-ttl" "${good[@]}" memcache-ttl=-5
refused "memcache-sequential-cutoff=4X: not a size" "${good[@]}" \
    memcache-sequential-cutoff=4X
refused "memcache-sequential-cutoff=-1: not a size" "${good[@]}" \
    memcache-sequential-cutoff=-1
refused "memcache-sequential-cutoff=2T: must be from 0 (off) to 1099511627776 bytes" \
    "${good[@]}" memcache-sequential-cutoff=2T
refused "must be 'update' or 'invalidate'" "${good[@]}" memcache-write-policy=lazy
refused "must be an absolute path" "${good[@]}" memcache-control=ctl.sock
touch "$tmp/file"
refused "exists and is not a socket" "${good[@]}" memcache-control="$tmp/file"
refused "unknown parameter 'memcache-server'" "${good[@]}" memcache-server=a:1
echo "$0: OK"
