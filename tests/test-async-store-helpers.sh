# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of the async filter's store file
# (test-async-store-*.sh), sourced after tests/functions.sh.  Not a test
# itself (not in TESTS).

source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

size=$(( 8 * 1024 * 1024 ))
good=$tmp/good.store

# store_make_dirty: $tmp/disk (random; a copy in $tmp/pristine) and $good,
# a store file (async-store-id=disk-a, async-max-dirty=4M) holding dirty
# data for it: writes, then SIGKILL.  $tmp/expected gets the image as
# written.
store_make_dirty ()
{
    make_random "$tmp/disk" $size 4
    cp "$tmp/disk" "$tmp/pristine"
    async_start make --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-max-dirty=4M async-writeback-delay=60000 async-write-size=32M \
        async-store-file="$good" async-store-id=disk-a
    store_writes 4 50 flush || fail "writes failed"
    kill -KILL "$pid"; wait "$pid" || true
    cmp -s "$tmp/disk" "$tmp/pristine" || fail "test bug: data written back early"
    abdctl store-info "$good" | grep -q "^state: dirty" || fail "test bug: not dirty"
}

# store_refused NAME MESSAGE-REGEX [PARAMS...]: nbdkit over $tmp/NAME.store
# (async-store-id=disk-a, async-max-dirty=4M unless PARAMS say otherwise)
# must exit with MESSAGE, leaving the image and the file as they were;
# and so must nbdkit forking into the background as it does by default
# (no -f; systemd's Type=forking): the file is checked in .get_ready,
# before the fork, so the process started exits non-zero.
store_refused ()
{
    local name=$1 re=$2; shift 2
    store_refused_path "$name" "$tmp/$name.store" "$re" "$@"
}

# store_refused_path NAME PATH MESSAGE-REGEX [PARAMS...]: the same with
# the store file at PATH.
store_refused_path ()
{
    local name=$1 path=$2 re=$3 rc=0; shift 3
    cp -p "$path" "$tmp/$name.before"
    timeout 60 nbdkit -f --log=stderr -U "$tmp/$name.sock" \
        --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
        async-store-file="$path" async-store-id=disk-a "$@" \
        2>"$tmp/$name.log" || rc=$?
    [ "$rc" -ne 0 ] || fail "$name: nbdkit started"
    [ "$rc" -ne 124 ] || fail "$name: nbdkit did not exit"
    grep -E "$re" "$tmp/$name.log" || { cat "$tmp/$name.log"; fail "$name: no message /$re/"; }
    cmp -s "$tmp/disk" "$tmp/pristine" || fail "$name: the image changed"
    cmp -s "$path" "$tmp/$name.before" || fail "$name: the file changed"

    rm -f "$tmp/$name.pid"
    rc=0
    timeout 60 nbdkit --log=stderr -U "$tmp/$name-fork.sock" \
        -P "$tmp/$name.pid" --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-max-dirty=4M async-store-file="$path" \
        async-store-id=disk-a "$@" 2>"$tmp/$name-fork.log" || rc=$?
    if [ -s "$tmp/$name.pid" ]; then
        kill_wait "$(cat "$tmp/$name.pid")" 10 || true
        fail "$name: forking nbdkit started (pid file written)"
    fi
    [ "$rc" -ne 0 ] || { cat "$tmp/$name-fork.log"; fail "$name: forking nbdkit exited 0"; }
    [ "$rc" -ne 124 ] || fail "$name: forking nbdkit did not exit"
    grep -qE "$re" "$tmp/$name-fork.log" ||
        { cat "$tmp/$name-fork.log"; fail "$name: forking: no message /$re/"; }
    cmp -s "$path" "$tmp/$name.before" || fail "$name: forking: the file changed"
}
