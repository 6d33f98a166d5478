# SPDX-License-Identifier: BSD-3-Clause
# Tests of nbdkit-powercut-plugin: each ends nbdkit with SIGKILL and checks
# the image against tests/abdtest/powercut.py.  test-powercut-helpers.sh is
# sourced by them.
check_PROGRAMS += tests/test-powercut-cache
tests_test_powercut_cache_SOURCES = tests/test-powercut-cache.c \
	plugins/powercut/cache.c plugins/powercut/cache.h
tests_test_powercut_cache_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/plugins/powercut
POWERCUT_SH_TESTS = \
	tests/test-powercut-flush.sh \
	tests/test-powercut-persist.sh \
	tests/test-powercut-multiconn.sh \
	tests/test-powercut-cachemax.sh \
	tests/test-powercut-params.sh
TESTS += tests/test-powercut-cache $(POWERCUT_SH_TESTS)
EXTRA_DIST += tests/test-powercut-helpers.sh \
	$(POWERCUT_SH_TESTS)
