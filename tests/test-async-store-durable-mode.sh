#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: the parameter and the file.
# - async-flush=store without async-store-file, and a bad word, are
#   refused at start;
# - a durable store file (version 3, with a journal) holding dirty data
#   is refused by a start with async-flush=ram, and a tmpfs-mode file
#   holding dirty data by a start with async-flush=store, each naming
#   the flush mode to start with; neither the image nor the file changes;
# - abdctl store-info shows the durable file's records as its journal
#   says (dirty);
# - the start with async-flush=store writes it back byte-exact, commits
#   (status: store_flush, store_commits), and after a clean stop the file
#   is clean.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

async_refused 'async-flush=store needs async-store-file' async-flush=store
async_refused 'async-flush' async-flush=bogus
async_refused 'async-flush' async-flush=

# A tmpfs-mode file with dirty data ($good), refused in durable mode.
store_make_dirty
cp "$good" "$tmp/ram.store"
store_refused ram "written with async-flush=ram: start once with async-flush=ram" \
    async-flush=store

# A durable file with dirty data: flushed writes, then SIGKILL.
cp "$tmp/pristine" "$tmp/disk"
rm -f "$tmp/expected"
async_start durable --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=4M async-writeback-delay=60000 async-write-size=32M \
    async-store-file="$tmp/durable.store" async-store-id=disk-a \
    async-flush=store
store_writes 5 60 flush || fail "writes failed"
kill -KILL "$pid"; wait "$pid" || true
cmp -s "$tmp/disk" "$tmp/pristine" || fail "test bug: data written back early"
abdctl store-info "$tmp/durable.store" > "$tmp/info" || fail "store-info failed"
grep -q "^version: 3" "$tmp/info" || fail "store-info: not version 3"
grep -q "^state: dirty" "$tmp/info" || fail "store-info: not dirty"
store_refused durable "written with async-flush=store: start once with async-flush=store"

# Its own mode writes it back.
async_start back --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=4M async-store-file="$tmp/durable.store" \
    async-store-id=disk-a async-flush=store async-control="$tmp/back.ctl"
"$PY" -m abdtest check --uri "$uri" --expected "$tmp/expected" ||
    fail "read through NBD differs"
# The write-back at start retired every record: one commit said so.
[ "$(st "$tmp/back.ctl" store_flush)" = store ] || fail "status: store_flush"
[ "$(st "$tmp/back.ctl" store_commits)" -ge 1 ] || fail "status: no commit"
[ "$(st "$tmp/back.ctl" store_commit_failed)" = 0 ] ||
    fail "status: store_commit_failed"
abdctl -s "$tmp/back.ctl" status | grep -q "durable in the store file" ||
    fail "abdctl status does not say that flushes are durable"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after a clean stop the image differs"
abdctl store-info "$tmp/durable.store" | grep -q "^state: clean" ||
    fail "the durable store file is not clean after a clean stop"
echo "$0: OK"
