#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# ThreadSanitizer on the threaded code, linked directly into test drivers
# (nbdkit itself cannot host TSan): the async filter's dirty store with its
# writer and flusher threads (tests/test-store.c, against its model; and
# tests/test-store-concurrent.c, eight clients on the same blocks), the
# memcache filter's server health under eight threads
# (tests/test-health-threads.c), its fill queue with its thread
# (tests/test-filler-threads.c) and its running pool, snapshots held by
# six threads while another changes the pool (tests/test-pool-threads.c).
# Any data race TSan reports fails the test (halt_on_error), as does any
# failed check of the drivers.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires gcc pkg-config
src=$abs_top_srcdir
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"

cflags=(-g -O1 -fsanitize=thread -DHAVE_CONFIG_H -I"$abs_top_builddir"
        -I"$src/common" $(pkg-config --cflags nbdkit) -pthread)
if ! echo 'int main(void){return 0;}' |
     gcc -x c -fsanitize=thread - -o "$tmp/probe" 2>"$tmp/probe.err" ||
   ! "$tmp/probe" 2>>"$tmp/probe.err"; then
    cat "$tmp/probe.err"
    echo "$0: SKIP: ThreadSanitizer does not build or run here"
    exit 77
fi

gcc "${cflags[@]}" -I"$src/filters/async/store" "$src/tests/test-store.c" \
    "$src/filters/async/store/"*.c "$src/common/privfile.c" \
    -lxxhash -o "$tmp/test-store-tsan"
gcc "${cflags[@]}" -I"$src/filters/async/store" \
    "$src/tests/test-store-concurrent.c" "$src/filters/async/store/"*.c \
    "$src/common/privfile.c" -lxxhash -o "$tmp/test-store-concurrent-tsan"
gcc "${cflags[@]}" -I"$src/filters/memcache" \
    "$src/tests/test-health-threads.c" "$src/filters/memcache/health.c" \
    -o "$tmp/test-health-tsan"
gcc "${cflags[@]}" -I"$src/filters/memcache" \
    "$src/tests/test-filler-threads.c" "$src/filters/memcache/filler.c" \
    -o "$tmp/test-filler-tsan"
gcc "${cflags[@]}" -I"$src/filters/memcache" \
    "$src/tests/test-pool-threads.c" "$src/filters/memcache/pool.c" \
    "$src/filters/memcache/ring.c" -lxxhash -o "$tmp/test-pool-tsan"

for seed in 11 12; do
    "$tmp/test-store-tsan" "$seed" 1500 ||
        fail "test-store under TSan, seed $seed"
done
"$tmp/test-store-concurrent-tsan" 3 11 ||
    fail "test-store-concurrent under TSan"
"$tmp/test-health-tsan" 20000 || fail "test-health-threads under TSan"
"$tmp/test-filler-tsan" 20000 || fail "test-filler-threads under TSan"
"$tmp/test-pool-tsan" 20000 || fail "test-pool-threads under TSan"
echo "$0: OK"
