#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: test-async-store-kill.sh with the
# restart at async-write-size=4K.  The file holds extents of up to 16
# blocks (64K writes at async-write-size=32M); this start's writers copy
# one block at a time, so the replay loads them in pieces.  Before, a
# 16-block extent went to a writer whose buffer holds one block: a heap
# overflow, or wrong data written to the device.
ABD_TEST_RESTART_WRITE_SIZE=4K \
    exec bash "${abs_top_srcdir:-.}/tests/test-async-store-kill.sh"
