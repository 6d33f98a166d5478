# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: write-back cache in bounded RAM.
filter_LTLIBRARIES += filters/async/nbdkit-async-filter.la
# The dirty store, one concept per file (store-impl.h has the map); the
# unit test tests/test-store links the same list.
ASYNC_STORE_SOURCES = \
	filters/async/store.c filters/async/store.h \
	filters/async/store-impl.h \
	filters/async/store-arena.c \
	filters/async/store-epoch.c \
	filters/async/store-index.c \
	filters/async/store-client.c \
	filters/async/store-writeback.c \
	filters/async/store-check.c
filters_async_nbdkit_async_filter_la_SOURCES = \
	filters/async/async.c \
	$(ASYNC_STORE_SOURCES) \
	filters/async/drainrate.c filters/async/drainrate.h \
	filters/async/storefile.c filters/async/storefile.h \
	filters/async/writeback.c filters/async/writeback.h \
	filters/async/stop.c filters/async/stop.h \
	filters/async/params.h
filters_async_nbdkit_async_filter_la_CFLAGS = $(AM_CFLAGS) $(NBDKIT_CFLAGS)
filters_async_nbdkit_async_filter_la_LIBADD = common/libabdcommon.la $(XXHASH_LIBS)
filters_async_nbdkit_async_filter_la_LDFLAGS = $(FILTER_LDFLAGS)
