# SPDX-License-Identifier: BSD-3-Clause
# Helpers both filters link: the control channel, operator messages,
# private files (abdctl and the store's unit tests compile that one in).
noinst_LTLIBRARIES += common/libabdcommon.la
common_libabdcommon_la_SOURCES = common/control.c common/control.h \
	common/log.c common/log.h common/privfile.c common/privfile.h
common_libabdcommon_la_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
