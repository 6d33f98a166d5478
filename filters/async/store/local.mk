# SPDX-License-Identifier: BSD-3-Clause
# The async filter's dirty store: no nbdkit, one library that the filter,
# the store's unit tests (tests/store.mk) and, for the store file alone,
# abdctl link.  store-impl.h has the map of its files and their layers.
noinst_LTLIBRARIES += filters/async/store/libabdstore.la
filters_async_store_libabdstore_la_SOURCES = \
	filters/async/store/store.h \
	filters/async/store/store-impl.h \
	filters/async/store/store-block.h \
	filters/async/store/store.c \
	filters/async/store/store-client.c \
	filters/async/store/store-writeback.c \
	filters/async/store/store-commit.c \
	filters/async/store/store-check.c \
	filters/async/store/store-life.c \
	filters/async/store/store-index.c \
	filters/async/store/store-arena.c \
	filters/async/store/drainrate.c filters/async/store/drainrate.h \
	filters/async/store/storelock.c filters/async/store/storelock.h \
	filters/async/store/storefile.c filters/async/store/storefile.h
filters_async_store_libabdstore_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/filters/async/store
# The store's own sources, for a program that compiles them with flags of
# its own (tests/store-trace).
ASYNC_STORE_SOURCES = $(filters_async_store_libabdstore_la_SOURCES)
