#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: test-async-durable-powercut-fs.sh
# with the commits' fdatasync skipped (ABD_TEST_STORE_NO_FDATASYNC, for
# tests only): fsync in the top filesystem returns before the store file
# is durable, and a power cut must damage it or lose fsynced files.
# Passes only if the check fails: it shows the test catches a missing
# commit step.
ABD_TEST_EXPECT_LOSS=1 \
    exec bash "${abs_top_srcdir:-.}/tests/test-async-durable-powercut-fs.sh"
