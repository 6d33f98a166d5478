# SPDX-License-Identifier: BSD-3-Clause
# Tests: automake TESTS, each exits 0 (pass), 77 (skipped) or else (fail).
TEST_EXTENSIONS = .sh
SH_LOG_COMPILER = bash
EXTRA_DIST += tests/functions.sh tests/abdtest/__init__.py \
	tests/abdtest/__main__.py tests/abdtest/control.py \
	tests/abdtest/device.py tests/abdtest/procs.py tests/abdtest/workload.py \
	tests/abdtest/testenv.py tests/abdtest/powercut.py
include tests/store.mk
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

# Tests of abdctl over both filters (abdctl/); its exit statuses and JSON
# against the async filter are test-abdctl-exit-*.sh, -flush-timeout.sh
# and -json.sh (tests/async.mk).
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
# README.md's examples, run in order in private namespaces.
TESTS += tests/test-readme.sh
EXTRA_DIST += tests/test-readme.sh tests/readme_blocks.py README.md
TESTS += tests/test-stack-netns.sh
EXTRA_DIST += tests/test-stack-netns.sh
TESTS += tests/test-abd-run.sh tests/test-abd-run-private.sh
EXTRA_DIST += tests/test-abd-run.sh tests/test-abd-run-private.sh
TESTS += tests/test-bench-hosts.sh
EXTRA_DIST += tests/test-bench-hosts.sh
# README's commands as a user runs them: a fresh clone, a clean
# environment (tests/test-user-helpers.sh).
TESTS += tests/test-user-abd-run-fio.sh tests/test-user-abd-run-ctrlc.sh \
	tests/test-user-scripts.sh
EXTRA_DIST += tests/test-user-helpers.sh tests/test-user-abd-run-fio.sh \
	tests/test-user-abd-run-ctrlc.sh tests/test-user-scripts.sh
TESTS += tests/test-fuzz.sh
EXTRA_DIST += tests/test-fuzz.sh tests/fuzz/fuzz-control.c tests/fuzz/fuzz-value.c tests/fuzz/fuzz-meta.c tests/fuzz/fuzz-text.c tests/fuzz/fuzz-state.c \
	$(wildcard $(srcdir)/tests/fuzz/corpus-*/*)

# The kernel NBD client in a QEMU guest (tests/kernel/): the whole stack,
# and a power cut under ext4 over the async filter in sync mode; the
# sandboxed units under a real systemd, PID 1 of the guest.
TESTS += tests/test-kernel-nbd.sh tests/test-kernel-powercut.sh \
	tests/test-kernel-units.sh tests/test-kernel-systemd.sh
EXTRA_DIST += tests/test-kernel-nbd.sh tests/test-kernel-powercut.sh \
	tests/test-kernel-units.sh tests/test-kernel-systemd.sh \
	tests/kernel/mkinitramfs.sh tests/kernel/vm.sh \
	tests/kernel/guest-lib.sh tests/kernel/guest.sh \
	tests/kernel/guest-powercut.sh tests/kernel/guest-units.sh \
	tests/kernel/guest-systemd.sh

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
	tests/test-filler-threads.c tests/test-pool-threads.c

# The model-checked torture run with a fault schedule (scripts/torture,
# a launcher of the package tests/torture/).
TESTS += tests/test-torture.sh
EXTRA_DIST += tests/test-torture.sh scripts/torture \
	tests/torture/__init__.py tests/torture/procs.py \
	tests/torture/model.py tests/torture/ops.py tests/torture/faults.py \
	tests/torture/run.py tests/torture/main.py

# The slow tests: the system tests (a QEMU guest, the kernel's loop device
# and ext4, the NUT daemons, network namespaces, systemd, a Debian package
# build), the torture runs, fuzzing, ThreadSanitizer, the memcache suite
# run again over the text protocol, and the drain budget's rate
# measurement (8 s windows).  `make check-fast` runs every other test,
# CHECK_FAST_JOBS at a time (most of a test's time is spent waiting on
# nbdkit and memcached, not on a CPU; each test has its own $tmp, with its
# Unix sockets, and free loopback ports); `make check-fast
# CHECK_FAST_JOBS=1` runs them one after the other.  `make check` and CI
# run them all, one at a time unless make is given -j.
SLOW_TESTS = \
	tests/test-kernel-nbd.sh tests/test-kernel-powercut.sh \
	tests/test-async-kernel.sh \
	tests/test-ups-nut.sh tests/test-ups-upssched.sh \
	tests/test-stack-netns.sh tests/test-systemd-units.sh \
	tests/test-debian-package.sh tests/test-torture.sh tests/test-fuzz.sh \
	tests/test-tsan.sh tests/test-memcache-text.sh \
	tests/test-async-drain-budget.sh tests/test-kernel-units.sh \
	tests/test-kernel-systemd.sh \
	tests/test-readme.sh tests/test-memcached-tuned.sh \
	tests/test-user-abd-run-fio.sh tests/test-user-abd-run-ctrlc.sh \
	tests/test-memcache-warm-default.sh tests/test-abd-run-warm.sh \
	tests/test-memcache-many-hosts.sh \
	tests/test-async-durable-powercut.sh \
	tests/test-async-durable-powercut-nosync.sh \
	tests/test-async-durable-powercut-fs.sh \
	tests/test-async-durable-powercut-fs-nosync.sh
CHECK_FAST_JOBS = 4
check-fast:
	$(MAKE) $(AM_MAKEFLAGS) -j$(CHECK_FAST_JOBS) check TESTS='$(filter-out $(SLOW_TESTS),$(TESTS))'
.PHONY: check-fast
