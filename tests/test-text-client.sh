#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# memcached-ext's text client (tests/test-text-client.c): its parser on
# crafted replies, then against real memcached servers, one on a free
# loopback port and one on a Unix socket: gets of 300 keys over several
# lines, sets, deletes, 1 MiB values, a value over the maximum; a
# stopped server (SIGSTOP) gives a timeout within the deadline.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires memcached
client=$abs_top_builddir/tests/test-text-client

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

# Stopped: it accepts connections (the kernel does) but never answers.
kill -STOP "$tcp_pid"
cleanup_fn kill -CONT "$tcp_pid"
"$client" timeout 127.0.0.1 "$tcp_port" 200 || fail "stopped server: no timeout in time"
kill -CONT "$tcp_pid"
"$client" basic 127.0.0.1 "$tcp_port" || fail "basic after SIGCONT"
echo "$0: OK"
