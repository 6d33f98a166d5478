# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: write-back cache in bounded RAM.
filter_LTLIBRARIES += filters/async/nbdkit-async-filter.la
filters_async_nbdkit_async_filter_la_SOURCES = \
	filters/async/async.c \
	filters/async/store.c filters/async/store.h \
	filters/async/drainrate.c filters/async/drainrate.h \
	filters/async/storefile.c filters/async/storefile.h \
	filters/async/writer.c filters/async/writer.h \
	filters/async/stop.c filters/async/stop.h \
	filters/async/params.h
filters_async_nbdkit_async_filter_la_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
filters_async_nbdkit_async_filter_la_LIBADD = common/libabdcommon.la $(XXHASH_LIBS)
filters_async_nbdkit_async_filter_la_LDFLAGS = $(FILTER_LDFLAGS)
