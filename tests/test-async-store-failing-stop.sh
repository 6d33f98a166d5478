#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a stop whose write-back keeps
# failing (the error filter below fails every write while $tmp/fail
# exists; async-exit-timeout=2) leaves the data in the store file, logs at
# error level how many bytes wait there, and nbdkit exits with status 75;
# a restart over a healthy lower device (no error filter) writes it back:
# the image is exact.  ABD_TEST_NO_STORE=1 runs it without the file (must
# fail).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 8 * 1024 * 1024 ))
store=$tmp/async.store
store_args=(async-store-file="$store")
[ -z "${ABD_TEST_NO_STORE:-}" ] || store_args=()
make_random "$tmp/disk" $size 2
cp "$tmp/disk" "$tmp/pristine"

touch "$tmp/fail"
async_start one --filter="$ASYNC_FILTER" --filter=error file "$tmp/disk" \
    error-pwrite=EIO error-pwrite-rate=1 error-pwrite-file="$tmp/fail" \
    async-exit-timeout=2 async-max-dirty=16M \
    "${store_args[@]+"${store_args[@]}"}"
# No client flush: write-back starts at once (the default 50 ms delay)
# and fails, and a flush in async mode then fails too (as documented).
store_writes 3 200 || fail "client writes failed"
kill -TERM "$pid"
wait_for 60 exited "$pid" || fail "nbdkit did not exit"
rc=0; wait "$pid" || rc=$?
echo "nbdkit exit status: $rc"
cmp -s "$tmp/disk" "$tmp/pristine" || fail "the image changed although writes failed"
if [ -z "${ABD_TEST_NO_STORE:-}" ]; then
    [ "$rc" -eq 75 ] || fail "exit status $rc, expected 75"
    grep -E "error: async: .* bytes of acknowledged writes are not written back; they wait in the store file" "$log" ||
        fail "no error-level message about the data kept in the file"
    kept=$(grep -oE '[0-9]+ bytes of acknowledged writes are not' "$log" | awk '{print $1}')
    info=$(abdctl store-info "$store" | awk '$1 == "dirty_bytes:" { print $2 }')
    [ "$kept" = "$info" ] && [ "$kept" -gt 0 ] ||
        fail "log says $kept bytes kept, store-info says $info"
fi

rm -f "$tmp/fail"
async_start two --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=16M \
    "${store_args[@]+"${store_args[@]}"}"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" ||
    fail "after the restart the image differs: $(first_diff "$tmp/disk" "$tmp/expected")"
echo "$0: OK"
