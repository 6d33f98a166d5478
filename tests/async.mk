# Tests of the async filter and abdctl.
check_PROGRAMS += tests/test-store
tests_test_store_SOURCES = tests/test-store.c \
	filters/async/store.c filters/async/store.h
tests_test_store_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/filters/async
TESTS += tests/test-store
