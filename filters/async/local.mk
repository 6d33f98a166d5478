# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: write-back cache in bounded RAM.  async.c holds the
# nbdkit callbacks and names the file of each idea; the store is in
# store/ (store/local.mk).
include filters/async/store/local.mk

filter_LTLIBRARIES += filters/async/nbdkit-async-filter.la
filters_async_nbdkit_async_filter_la_SOURCES = \
	filters/async/async.c \
	filters/async/params.c filters/async/params.h \
	filters/async/mode.c filters/async/mode.h \
	filters/async/commands.c filters/async/commands.h \
	filters/async/writeback.c filters/async/writeback.h \
	filters/async/stop.c filters/async/stop.h
filters_async_nbdkit_async_filter_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/filters/async/store
filters_async_nbdkit_async_filter_la_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
filters_async_nbdkit_async_filter_la_LIBADD = \
	filters/async/store/libabdstore.la common/libabdcommon.la $(XXHASH_LIBS)
filters_async_nbdkit_async_filter_la_LDFLAGS = $(FILTER_LDFLAGS)
