# SPDX-License-Identifier: BSD-3-Clause
# Tests of nbdkit-memcache-filter.  The shell tests start real memcached
# servers and nbdkit; test-memcache-helpers.sh is sourced by them.
check_PROGRAMS += tests/test-memcache-units tests/test-memcache-value \
	tests/test-memcache-marker tests/test-seqdetect
tests_test_memcache_units_SOURCES = tests/test-memcache-units.c tests/unit-check.h \
	tests/unit-rand.h \
	filters/memcache/ring.c filters/memcache/ring.h \
	filters/memcache/pool.c filters/memcache/pool.h
tests_test_memcache_units_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/filters/memcache
tests_test_memcache_units_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
tests_test_memcache_units_LDADD = $(XXHASH_LIBS)
tests_test_memcache_value_SOURCES = tests/test-memcache-value.c tests/unit-check.h \
	filters/memcache/value.c filters/memcache/value.h filters/memcache/le.h \
	filters/memcache/writeseq.c filters/memcache/writeseq.h
tests_test_memcache_value_CPPFLAGS = $(tests_test_memcache_units_CPPFLAGS)
tests_test_memcache_value_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS) \
	$(LIBCRYPTO_CFLAGS)
tests_test_memcache_value_LDADD = $(LIBCRYPTO_LIBS)
tests_test_memcache_marker_SOURCES = tests/test-memcache-marker.c \
	tests/unit-check.h \
	filters/memcache/marker.c filters/memcache/marker.h filters/memcache/le.h
tests_test_memcache_marker_CPPFLAGS = $(tests_test_memcache_units_CPPFLAGS) \
	-I$(top_srcdir)/memcached-ext
tests_test_memcache_marker_CFLAGS = $(tests_test_memcache_value_CFLAGS)
tests_test_memcache_marker_LDADD = $(LIBCRYPTO_LIBS)
tests_test_seqdetect_SOURCES = tests/test-seqdetect.c tests/unit-check.h \
	tests/unit-rand.h \
	filters/memcache/seqdetect.c filters/memcache/seqdetect.h
tests_test_seqdetect_CPPFLAGS = $(tests_test_memcache_units_CPPFLAGS)
MEMCACHE_SH_TESTS = \
	tests/test-memcache-params.sh \
	tests/test-memcache-read.sh \
	tests/test-memcache-error.sh \
	tests/test-memcache-write.sh \
	tests/test-memcache-ids.sh \
	tests/test-memcache-corrupt.sh \
	tests/test-memcache-stopped.sh \
	tests/test-memcache-log.sh \
	tests/test-memcache-restart.sh \
	tests/test-memcache-stale.sh \
	tests/test-memcache-concurrent.sh \
	tests/test-memcache-attacker.sh \
	tests/test-memcache-warm.sh \
	tests/test-memcache-warm-cold.sh \
	tests/test-memcache-warm-copy.sh \
	tests/test-memcache-warm-restore.sh \
	tests/test-memcache-startcheck.sh \
	tests/test-memcache-slow.sh \
	tests/test-memcache-oversized.sh \
	tests/test-memcache-skipped-writes.sh \
	tests/test-memcache-warm-default.sh \
	tests/test-abd-run-warm.sh \
	tests/test-memcache-text.sh \
	tests/test-memcache-hostile.sh \
	tests/test-memcache-pool.sh \
	tests/test-memcache-pool-model.sh \
	tests/test-memcache-pool-warm.sh \
	tests/test-memcache-pool-state.sh \
	tests/test-memcache-scan.sh \
	tests/test-memcache-scan-exact.sh
TESTS += tests/test-memcache-units tests/test-memcache-value \
	tests/test-memcache-marker tests/test-seqdetect \
	$(MEMCACHE_SH_TESTS)
# Not in MEMCACHE_SH_TESTS: 32 nbdkit processes (slow), meta only.
TESTS += tests/test-memcache-many-hosts.sh
EXTRA_DIST += tests/test-memcache-many-hosts.sh tests/many_hosts_client.py
EXTRA_DIST += tests/test-memcache-helpers.sh tests/memcached_peer.py \
	tests/memcached_hostile.py \
	tests/memcache_warm_passes.py tests/memcache_pool_model.py \
	$(MEMCACHE_SH_TESTS)

# memcached-ext, the meta protocol client.
check_PROGRAMS += tests/test-meta-client
tests_test_meta_client_SOURCES = tests/test-meta-client.c
tests_test_meta_client_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/memcached-ext
tests_test_meta_client_LDADD = memcached-ext/libmcx.la
TESTS += tests/test-meta-client.sh tests/test-memcached-tuned.sh \
	tests/test-mcx-rtt.sh
EXTRA_DIST += tests/test-meta-client.sh tests/test-memcached-tuned.sh \
	tests/test-mcx-rtt.sh

# memcached-ext, the text protocol client.
check_PROGRAMS += tests/test-text-client
tests_test_text_client_SOURCES = tests/test-text-client.c
tests_test_text_client_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/memcached-ext
tests_test_text_client_LDADD = memcached-ext/libmcx.la
TESTS += tests/test-text-client.sh
EXTRA_DIST += tests/test-text-client.sh
