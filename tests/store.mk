# SPDX-License-Identifier: BSD-3-Clause
# The dirty store's own tests (filters/async/store/): its unit tests
# against models, and the layering of its files.
STORE_TEST_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/filters/async/store
STORE_TEST_LDADD = filters/async/store/libabdstore.la $(XXHASH_LIBS)

check_PROGRAMS += tests/test-store
tests_test_store_SOURCES = tests/test-store.c tests/unit-rand.h \
	common/privfile.c common/privfile.h
tests_test_store_CPPFLAGS = $(STORE_TEST_CPPFLAGS)
tests_test_store_LDADD = $(STORE_TEST_LDADD)

check_PROGRAMS += tests/test-store-index
tests_test_store_index_SOURCES = tests/test-store-index.c tests/unit-rand.h \
	common/privfile.c common/privfile.h
tests_test_store_index_CPPFLAGS = $(STORE_TEST_CPPFLAGS)
tests_test_store_index_LDADD = $(STORE_TEST_LDADD)

# RAM per dirty block, scattered and sequential.
check_PROGRAMS += tests/test-store-ram
tests_test_store_ram_SOURCES = tests/test-store-ram.c \
	common/privfile.c common/privfile.h
tests_test_store_ram_CPPFLAGS = $(STORE_TEST_CPPFLAGS)
tests_test_store_ram_LDADD = $(STORE_TEST_LDADD)

# Many client threads on the same dirty blocks while writers run.
check_PROGRAMS += tests/test-store-concurrent
tests_test_store_concurrent_SOURCES = tests/test-store-concurrent.c \
	common/privfile.c common/privfile.h
tests_test_store_concurrent_CPPFLAGS = $(STORE_TEST_CPPFLAGS)
tests_test_store_concurrent_LDADD = $(STORE_TEST_LDADD)

check_PROGRAMS += tests/test-drainrate
tests_test_drainrate_SOURCES = tests/test-drainrate.c
tests_test_drainrate_CPPFLAGS = $(STORE_TEST_CPPFLAGS)
tests_test_drainrate_LDADD = $(STORE_TEST_LDADD) -lm

# A client request followed call by call through the store
# (tests/store_trace.py): its own build of the store, every function
# instrumented and none inlined.
check_PROGRAMS += tests/store-trace
tests_store_trace_SOURCES = tests/store-trace.c $(ASYNC_STORE_SOURCES) \
	common/privfile.c common/privfile.h
tests_store_trace_CPPFLAGS = $(STORE_TEST_CPPFLAGS)
tests_store_trace_CFLAGS = $(AM_CFLAGS) -O0 -finstrument-functions
tests_store_trace_LDADD = $(XXHASH_LIBS) -ldl

TESTS += tests/test-store tests/test-store-index tests/test-store-ram \
	tests/test-store-concurrent tests/test-drainrate \
	tests/test-store-layers.sh
EXTRA_DIST += tests/test-store-layers.sh tests/store_trace.py

# The same test over a store built with test hooks: its merge rule is
# broken on purpose, one part at a time, and the test must fail
# (tests/test-store-merge-rule.sh).
check_PROGRAMS += tests/test-store-hooks
tests_test_store_hooks_SOURCES = tests/test-store.c tests/unit-rand.h \
	$(ASYNC_STORE_SOURCES) common/privfile.c common/privfile.h
tests_test_store_hooks_CPPFLAGS = $(STORE_TEST_CPPFLAGS) -DSTORE_TEST_HOOKS
tests_test_store_hooks_LDADD = $(XXHASH_LIBS)
TESTS += tests/test-store-merge-rule.sh
EXTRA_DIST += tests/test-store-merge-rule.sh
