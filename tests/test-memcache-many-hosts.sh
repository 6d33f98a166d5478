#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Many hosts, one pool: 32 nbdkit processes, each with its own device
# (a file) and memcache-id, share 3 memcached servers on this machine,
# on the filter's default settings (memcache-timeout included).  All of
# them read and write at once (tests/many_hosts_client.py), every read
# compared with each device's model, while the pool changes under them: a
# 4th server joins every device's pool, then one of the first three
# leaves (abdctl servers add/remove).  Afterwards every device reads back exactly and
# no nbdkit holds more than 4 connections to any one memcached server.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires ss

hosts=${ABD_MANY_HOSTS:-32}
mc_start_three
ctls=() socks=() pids=()
for (( i=0; i<hosts; i++ )); do
    truncate -s 2M "$tmp/img$i"
    start_nbdkit "dev$i" --filter="$MEMCACHE_FILTER" file "$tmp/img$i" \
        memcache-servers="$MC_SERVERS" memcache-id="many-$i" \
        memcache-control="$tmp/ctl$i.sock"
    ctls+=("$tmp/ctl$i.sock") socks+=("$sock") pids+=("$pid")
done

# conns_ok: no nbdkit has more than 4 connections to one memcached.
conns_ok ()
{
    local port worst
    for port in "${MC_PORTS[@]}"; do
        worst=$(ss -Htnp state established "( dport = :$port )" |
                grep -o 'pid=[0-9]*' | sort | uniq -c | sort -rn |
                awk 'NR == 1 { print $1 }')
        echo "memcached :$port: at most ${worst:-0} connections per nbdkit"
        [ "${worst:-0}" -le 4 ] || return 1
    done
}

# on_all CMD...: abdctl CMD on every device's control socket; a device
# that refuses is asked again (a busy machine can make the new server's
# check answer late), 10 times at most.
on_all ()
{
    local i n
    for (( i=0; i<hosts; i++ )); do
        for (( n=0; ; n++ )); do
            abdctl -s "${ctls[i]}" "$@" > "$tmp/on_all.out" 2>&1 && break
            [ "$n" -lt 10 ] ||
                fail "device $i: abdctl $*: $(cat "$tmp/on_all.out")"
            sleep 0.5
        done
    done
}

# pool_change: while the devices run, a 4th memcached joins the pool of
# every device, then the first of the three leaves it.
pool_change ()
{
    conns_ok || fail "more than 4 connections per nbdkit to one server"
    start_memcached s3
    MC_PORTS+=("$mc_port")
    on_all servers add "127.0.0.1:$mc_port"
    on_all servers remove "127.0.0.1:${MC_PORTS[0]}"
    removed=${MC_PORTS[0]}
    MC_PORTS=("${MC_PORTS[@]:1}")
}

# no_conns_to PORT: no nbdkit is connected to the server on PORT.
no_conns_to ()
{
    ! ss -Htnp state established "( dport = :$1 )" | grep -q nbdkit
}

mkdir "$tmp/run"
OPS=${ABD_MANY_HOSTS_OPS:-200} HOT=128 CHANGE_DEADLINE=300 \
    "$PY" "$abs_top_srcdir/tests/many_hosts_client.py" "$tmp/run" \
    "${socks[@]}" > "$tmp/client.out" 2>&1 &
client=$!
cleanup_fn kill_wait "$client"
wait_for 300 test -e "$tmp/run/phase1" ||
    { cat "$tmp/client.out"; fail "the devices did not finish phase 1"; }
pool_change
touch "$tmp/run/changed"
wait "$client" || { cat "$tmp/client.out"; fail "a device read wrong data"; }
[ "$(grep -c ' mismatches 0$' "$tmp/client.out")" -eq "$hosts" ] ||
    { cat "$tmp/client.out"; fail "not every device reported"; }
conns_ok || fail "more than 4 connections per nbdkit to one server"
wait_for 20 no_conns_to "$removed" ||
    fail "nbdkit still connected to the removed server: " \
         "$(ss -Htnp state established "( dport = :$removed )")"
# Every device's pool is the new one.
want=$(printf '127.0.0.1:%s\n' "${MC_PORTS[@]}" | sort)
for (( i=0; i<hosts; i++ )); do
    got=$(mc_status "${ctls[i]}" \
          '"\n".join(sorted(s["address"] for s in d["servers"].values()))')
    [ "$got" = "$want" ] || fail "device $i's pool: $got, not $want"
done

# Each device's hits and misses, for the log (how fairly the pool is
# shared is scripts/bench's to measure, not a pass/fail rule), and its
# image equals its file.
for (( i=0; i<hosts; i++ )); do
    echo "dev $i: hits $(status_field "${ctls[i]}" hits)" \
         "misses $(status_field "${ctls[i]}" misses)"
done
for (( i=0; i<hosts; i++ )); do
    nbdcopy "nbd+unix:///?socket=${socks[i]}" "$tmp/back" ||
        fail "cannot read device $i"
    cmp "$tmp/back" "$tmp/img$i" || fail "device $i differs from its file"
done
echo "$0: OK"
