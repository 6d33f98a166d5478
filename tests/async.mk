# SPDX-License-Identifier: BSD-3-Clause
# Tests of the async filter and abdctl; the store's own are in
# tests/store.mk.
ASYNC_SH_TESTS = \
	tests/test-async-readback.sh \
	tests/test-async-shutdown.sh \
	tests/test-async-drain-log.sh \
	tests/test-async-drain-sleeping-filters.sh \
	tests/test-async-drain-slow.sh \
	tests/test-async-unaligned.sh \
	tests/test-async-race-async.sh \
	tests/test-async-race-mode-switch.sh \
	tests/test-async-race-sync.sh \
	tests/test-async-extents.sh \
	tests/test-async-multiconn.sh \
	tests/test-async-multiconn-lower.sh \
	tests/test-async-sync-flush.sh \
	tests/test-async-mode-switch.sh \
	tests/test-async-sync-file.sh \
	tests/test-async-sync-writes-through.sh \
	tests/test-async-sync-writes-hold.sh \
	tests/test-async-mode-switch-inflight.sh \
	tests/test-async-syncfile-failsafe.sh \
	tests/test-async-params-sizes.sh \
	tests/test-async-params-numbers.sh \
	tests/test-async-params-words.sh \
	tests/test-async-params-paths.sh \
	tests/test-async-params-unknown.sh \
	tests/test-async-params-read-only.sh \
	tests/test-async-params-limits.sh \
	tests/test-async-params-help.sh \
	tests/test-abdctl-exit-ok.sh \
	tests/test-abdctl-exit-err.sh \
	tests/test-abdctl-exit-usage.sh \
	tests/test-abdctl-flush-timeout.sh \
	tests/test-abdctl-json.sh \
	tests/test-abdctl-progress.sh \
	tests/test-async-lower-write-errors.sh \
	tests/test-async-lower-flush-errors.sh \
	tests/test-async-exit-lost-data.sh \
	tests/test-async-backpressure.sh \
	tests/test-async-memory-bound.sh \
	tests/test-async-mlock.sh \
	tests/test-async-fio.sh \
	tests/test-async-kernel.sh \
	tests/test-async-store-kill.sh \
	tests/test-async-store-kill-smaller.sh \
	tests/test-async-store-kill-durable.sh \
	tests/test-async-store-durable-mode.sh \
	tests/test-async-store-group-commit.sh \
	tests/test-async-store-durable-through.sh \
	tests/test-async-durable-powercut.sh \
	tests/test-async-durable-powercut-nosync.sh \
	tests/test-async-durable-powercut-fs.sh \
	tests/test-async-durable-powercut-fs-nosync.sh \
	tests/test-async-store-failing-stop.sh \
	tests/test-async-store-storm.sh \
	tests/test-async-store-bad-header.sh \
	tests/test-async-store-bad-record.sh \
	tests/test-async-store-other-device.sh \
	tests/test-async-store-other-max-dirty.sh \
	tests/test-async-store-status.sh \
	tests/test-async-store-in-use.sh \
	tests/test-async-store-private.sh \
	tests/test-async-drain-budget.sh
TESTS += $(ASYNC_SH_TESTS)
EXTRA_DIST += tests/test-async-helpers.sh tests/test-async-mode-helpers.sh \
	tests/test-async-store-helpers.sh \
	tests/test-async-errors-helpers.sh \
	tests/test-abdctl-exit-helpers.sh \
	tests/test-async-race-helpers.sh \
	tests/test-async-drain-helpers.sh tests/async_race_client.py tests/async_errors_client.py tests/durable_powercut.py \
	tests/test-async-durable-helpers.sh tests/durable_powercut_fs.py \
	$(ASYNC_SH_TESTS)
