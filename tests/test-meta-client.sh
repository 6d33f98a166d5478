#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# memcached-ext's meta client (tests/test-meta-client.c) against real
# memcached servers: one on a free loopback port, one on a Unix socket.
# Batches of gets, sets and deletes, 1 MiB values, 256 keys; a stopped
# server (SIGSTOP) gives a timeout within the deadline; a server killed
# in the middle of a batch gives an error, not a hang.  abd-mcx-rtt
# measures round trips.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires memcached
client=$abs_top_builddir/tests/test-meta-client

"$client" parser || fail "parser cases"

# -I 2m: items of 1 MiB plus key.
start_memcached tcp -I 2m
tcp_port=$mc_port tcp_pid=$mc_pid
memcached -s "$tmp/mc.sock" -u root -m 64 -I 2m >"$tmp/memcached-unix.log" 2>&1 &
unix_pid=$!
memcached_at_exit "$unix_pid"
wait_for 10 test -S "$tmp/mc.sock" || fail "memcached on a Unix socket did not start"

"$client" basic 127.0.0.1 "$tcp_port" || fail "basic over TCP"
"$client" basic "$tmp/mc.sock" 0 || fail "basic over a Unix socket"

# abd-mcx-rtt (scripts/bench's limit row): three numbers, all > 0.
rtt=$("$abs_top_builddir/memcached-ext/abd-mcx-rtt" -n 50 \
          "127.0.0.1:$tcp_port,127.0.0.1:$tcp_port") ||
    fail "abd-mcx-rtt failed"
echo "$rtt"
for k in mg1_us mg16_us mget64k_us; do
    grep -Eq "^$k=[0-9]+\.[0-9]+$" <<<"$rtt" &&
        ! grep -Eq "^$k=0\.0+$" <<<"$rtt" ||
        fail "abd-mcx-rtt: no $k"
done

# Stopped: it accepts connections (the kernel does) but never answers.
kill -STOP "$tcp_pid"
cleanup_fn kill -CONT "$tcp_pid"
"$client" timeout 127.0.0.1 "$tcp_port" 200 || fail "stopped server: no timeout in time"
kill -CONT "$tcp_pid"
"$client" basic 127.0.0.1 "$tcp_port" || fail "basic after SIGCONT"

# Killed in the middle of a batch: of sets, of gets.
"$client" killed "$tmp/mc.sock" 0 "$unix_pid" set || fail "killed server (Unix socket)"
# The gets go to a stopped server, so it cannot answer them before it dies.
kill -STOP "$tcp_pid"
stopped () { [ "$(awk '{ print $3 }' "/proc/$tcp_pid/stat")" = T ]; }
wait_for 10 stopped || fail "memcached did not stop"
"$client" killed 127.0.0.1 "$tcp_port" "$tcp_pid" get || fail "killed server (TCP)"
echo "$0: OK"
