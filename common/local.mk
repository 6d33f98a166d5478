# SPDX-License-Identifier: BSD-3-Clause
# Helpers both filters link: the control channel, operator messages.
noinst_LTLIBRARIES += common/libabdcommon.la
common_libabdcommon_la_SOURCES = common/control.c common/control.h \
	common/log.c common/log.h
common_libabdcommon_la_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
