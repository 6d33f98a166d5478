#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: the memcache tests again with
# memcache-protocol=text (conn-text.c, memcached-ext/text-*.c); the
# suite itself runs with the default, meta.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit memcached
export MEMCACHE_PROTOCOL=text
for t in read write stale corrupt attacker concurrent stopped restart slow error ids \
         warm warm-restore oversized skipped-writes scan-exact; do
    echo "== test-memcache-$t.sh, memcache-protocol=text"
    bash "$abs_top_srcdir/tests/test-memcache-$t.sh" ||
        fail "test-memcache-$t.sh with memcache-protocol=text"
done
echo "$0: OK"
