#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/abd-run's stack, on its defaults (no memcache-timeout: issue
# #20), keeps its read cache warm: over a 64 MiB image, a cold pass then
# two warm passes reading every 64K chunk once in random order, 16 in
# flight, every byte checked; memcached (its own get_hits) serves >= 99%
# of the blocks of the median warm pass and >= 95% of every one, on an
# idle machine and with one busy CPU beside.  abd-run passed memcache-timeout=50 until the filter told a
# busy server from a dead one.  tests/memcache_warm_passes.py does the
# work; abd-run runs in a runtime directory of this test's.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit memcached
requires_python_nbd

"$PY" "$abs_top_srcdir/tests/memcache_warm_passes.py" \
    --abd-run "$abs_top_srcdir/scripts/abd-run" \
    --rounds "${WARM_ROUNDS:-1}" --warm 2 --loads idle,busy ||
    fail "a warm pass on abd-run's stack was not served by memcached"
echo "$0: OK"
