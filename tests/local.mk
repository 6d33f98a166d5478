# SPDX-License-Identifier: BSD-3-Clause
# Tests: automake TESTS, each exits 0 (pass), 77 (skipped) or else (fail).
TEST_EXTENSIONS = .sh
SH_LOG_COMPILER = bash
EXTRA_DIST += tests/functions.sh
include tests/async.mk
include tests/memcache.mk
include tests/powercut.mk

# Tests of the control channel both filters serve (common/control.c).
CONTROL_SH_TESTS = \
	tests/test-control-mode.sh \
	tests/test-control-deadline.sh \
	tests/test-control-idle.sh
TESTS += $(CONTROL_SH_TESTS)
EXTRA_DIST += $(CONTROL_SH_TESTS)

# Tests of abdctl over both filters (abdctl/); test-async-abdctl.sh has
# its exit statuses against the async filter.
ABDCTL_SH_TESTS = \
	tests/test-abdctl-status.sh \
	tests/test-abdctl-metrics.sh \
	tests/test-abdctl-completion.sh
TESTS += $(ABDCTL_SH_TESTS)
EXTRA_DIST += tests/test-abdctl-helpers.sh $(ABDCTL_SH_TESTS)

# Tests of the whole stack (async over memcache over a plugin).
TESTS += tests/test-stack-fio.sh
EXTRA_DIST += tests/test-stack-fio.sh
TESTS += tests/test-stack-tls.sh
EXTRA_DIST += tests/test-stack-tls.sh
TESTS += tests/test-debian-package.sh
EXTRA_DIST += tests/test-debian-package.sh
TESTS += tests/test-systemd-units.sh
EXTRA_DIST += tests/test-systemd-units.sh
TESTS += tests/test-stack-netns.sh
EXTRA_DIST += tests/test-stack-netns.sh
TESTS += tests/test-abd-run.sh tests/test-abd-run-private.sh
EXTRA_DIST += tests/test-abd-run.sh tests/test-abd-run-private.sh
TESTS += tests/test-fuzz.sh
EXTRA_DIST += tests/test-fuzz.sh tests/fuzz/fuzz-control.c tests/fuzz/fuzz-value.c tests/fuzz/fuzz-meta.c \
	$(wildcard $(srcdir)/tests/fuzz/corpus-*/*)

# The kernel NBD client in a QEMU guest (tests/kernel/): the whole stack,
# and a power cut under ext4 over the async filter in sync mode.
TESTS += tests/test-kernel-nbd.sh tests/test-kernel-powercut.sh
EXTRA_DIST += tests/test-kernel-nbd.sh tests/test-kernel-powercut.sh \
	tests/kernel/mkinitramfs.sh tests/kernel/vm.sh \
	tests/kernel/guest-lib.sh tests/kernel/guest.sh \
	tests/kernel/guest-powercut.sh

# UPS integration (scripts/ups/) with the real NUT daemons.
TESTS += tests/test-ups-nut.sh tests/test-ups-upssched.sh \
	tests/test-ups-scripts.sh
EXTRA_DIST += tests/test-ups-nut.sh tests/test-ups-upssched.sh \
	tests/test-ups-scripts.sh

# Sanitizer builds: nbdkit runs with the ASan runtime preloaded, and this
# library keeps the preload from reaching the programs nbdkit starts.
if SANITIZERS
check_LTLIBRARIES = tests/abd-preload-once.la
tests_abd_preload_once_la_SOURCES = tests/preload-once.c
tests_abd_preload_once_la_CFLAGS = $(WARN_CFLAGS)
tests_abd_preload_once_la_LDFLAGS = -module -avoid-version -shared \
	-rpath /nowhere
endif
EXTRA_DIST += tests/preload-once.c

# ThreadSanitizer on the threaded code, through direct test drivers.
TESTS += tests/test-tsan.sh
EXTRA_DIST += tests/test-tsan.sh tests/test-health-threads.c \
	tests/test-filler-threads.c

# The model-checked torture run with a fault schedule (scripts/torture).
TESTS += tests/test-torture.sh
EXTRA_DIST += tests/test-torture.sh scripts/torture
