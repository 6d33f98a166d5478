#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Fuzz the parsers that read untrusted bytes, with libFuzzer plus
# AddressSanitizer and UndefinedBehaviorSanitizer, for a bounded time
# (FUZZ_SECONDS each, default 20), starting from the seed corpora in
# tests/fuzz/corpus-*:
#
#   fuzz-control  control-channel requests (common/control.c)
#   fuzz-value    cached values and key names from memcached (value.c)
#   fuzz-meta     meta protocol replies from memcached
#                 (memcached-ext/meta-parse.c)
#   fuzz-text     text protocol replies from memcached
#                 (memcached-ext/text-parse.c)
#   fuzz-state    the warm-restart state file, behind its MAC
#                 (filters/memcache/state.c)
#
# A longer run: FUZZ_SECONDS=3600 bash tests/test-fuzz.sh.  A crash
# leaves its input in the log (crash-*), reproducible with the built
# fuzzer binary, which is kept when FUZZ_KEEP=DIR is set.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires clang
secs=${FUZZ_SECONDS:-20}
src=$abs_top_srcdir

cflags=(-g -O1 -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -DHAVE_CONFIG_H
        -I"$abs_top_builddir" -I"$src/common" -I"$src/filters/memcache"
        -I"$src/memcached-ext")
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
     clang -x c -fsanitize=fuzzer - -o "$tmp/probe" 2>"$tmp/probe.err"; then
    cat "$tmp/probe.err"
    echo "$0: SKIP: clang cannot build libFuzzer targets here"
    exit 77
fi

clang "${cflags[@]}" "$src/tests/fuzz/fuzz-control.c" "$src/common/control.c" \
    -pthread -o "$tmp/fuzz-control"
clang "${cflags[@]}" "$src/tests/fuzz/fuzz-value.c" \
    "$src/filters/memcache/value.c" -lcrypto -pthread -o "$tmp/fuzz-value"
clang "${cflags[@]}" "$src/tests/fuzz/fuzz-meta.c" \
    "$src/memcached-ext/meta-parse.c" "$src/memcached-ext/reply.c" -o "$tmp/fuzz-meta"
clang "${cflags[@]}" "$src/tests/fuzz/fuzz-text.c" \
    "$src/memcached-ext/text-parse.c" "$src/memcached-ext/reply.c" -o "$tmp/fuzz-text"
clang "${cflags[@]}" "$src/tests/fuzz/fuzz-state.c" \
    "$src/filters/memcache/state.c" -lcrypto -pthread -o "$tmp/fuzz-state"

for target in control value meta text state; do
    mkdir -p "$tmp/corpus-$target"
    cp "$src/tests/fuzz/corpus-$target"/* "$tmp/corpus-$target/"
    # The seeds alone first: each must run clean.
    TMPDIR=$tmp "$tmp/fuzz-$target" -runs=0 "$tmp/corpus-$target" \
        >"$tmp/seed-$target.log" 2>&1 ||
        { cat "$tmp/seed-$target.log"; fail "fuzz-$target failed on its seeds"; }
    TMPDIR=$tmp "$tmp/fuzz-$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix="$tmp/" "$tmp/corpus-$target" \
        >"$tmp/fuzz-$target.log" 2>&1 ||
        { tail -n 40 "$tmp/fuzz-$target.log"; ls "$tmp"/crash-* 2>/dev/null;
          fail "fuzz-$target found a failure"; }
    tail -n 1 "$tmp/fuzz-$target.log"
done
if [ -n "${FUZZ_KEEP:-}" ]; then
    mkdir -p "$FUZZ_KEEP" && cp "$tmp"/fuzz-control "$tmp"/fuzz-value "$tmp"/fuzz-meta "$tmp"/fuzz-text "$tmp"/fuzz-state \
        "$FUZZ_KEEP"/
fi
echo "$0: OK"
