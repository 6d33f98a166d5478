# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a read cache in a pool of memcached servers.
# Uses memcached-ext (meta and text protocols), libcrypto (sealed values)
# and libxxhash (placement).
filter_LTLIBRARIES += filters/memcache/nbdkit-memcache-filter.la
filters_memcache_nbdkit_memcache_filter_la_SOURCES = \
	filters/memcache/memcache.c \
	filters/memcache/params.h \
	filters/memcache/ring.c filters/memcache/ring.h \
	filters/memcache/pool.c filters/memcache/pool.h \
	filters/memcache/servers.c filters/memcache/servers.h \
	filters/memcache/health.c filters/memcache/health.h \
	filters/memcache/conn.c filters/memcache/conn.h \
	filters/memcache/conn-meta.c filters/memcache/conn-meta.h \
	filters/memcache/conn-text.c filters/memcache/conn-oneshot.c \
	filters/memcache/value.c filters/memcache/value.h filters/memcache/le.h \
	filters/memcache/writeseq.c filters/memcache/writeseq.h \
	filters/memcache/reader.c filters/memcache/reader.h \
	filters/memcache/seqdetect.c filters/memcache/seqdetect.h \
	filters/memcache/filler.c filters/memcache/filler.h \
	filters/memcache/writer.c filters/memcache/writer.h \
	filters/memcache/stats.c filters/memcache/stats.h \
	filters/memcache/state.c filters/memcache/state.h \
	filters/memcache/marker.c filters/memcache/marker.h \
	filters/memcache/startcheck.c filters/memcache/startcheck.h
filters_memcache_nbdkit_memcache_filter_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/memcached-ext
filters_memcache_nbdkit_memcache_filter_la_CFLAGS = \
	$(AM_CFLAGS) $(NBDKIT_CFLAGS) $(LIBCRYPTO_CFLAGS)
filters_memcache_nbdkit_memcache_filter_la_LIBADD = \
	common/libabdcommon.la memcached-ext/libmcx.la $(LIBCRYPTO_LIBS) $(XXHASH_LIBS)
filters_memcache_nbdkit_memcache_filter_la_LDFLAGS = $(FILTER_LDFLAGS)
