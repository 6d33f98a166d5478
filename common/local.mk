# SPDX-License-Identifier: BSD-3-Clause
# Helpers both filters link: the control channel.
noinst_LTLIBRARIES += common/libabdcommon.la
common_libabdcommon_la_SOURCES = common/control.c common/control.h
common_libabdcommon_la_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
