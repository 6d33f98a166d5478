#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: test-async-store-kill.sh with a
# durable store file.  Its map is private, so only what the last commit
# wrote outlives the SIGKILL; the client flushed before the kill, so that
# is everything, and the restart replays the journal and writes it back.
ABD_TEST_FLUSH_STORE=1 \
    exec bash "${abs_top_srcdir:-.}/tests/test-async-store-kill.sh"
