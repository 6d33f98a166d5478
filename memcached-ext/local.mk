# SPDX-License-Identifier: BSD-3-Clause
# abd memcached-ext: a small client for memcached's meta protocol, linked
# into the memcache filter (and its tests) as a convenience library.
noinst_LTLIBRARIES += memcached-ext/libmcx.la
memcached_ext_libmcx_la_SOURCES = \
	memcached-ext/meta.h \
	memcached-ext/meta-parse.c \
	memcached-ext/meta-conn.c
memcached_ext_libmcx_la_CFLAGS = $(AM_CFLAGS)

# memcached's options for a server of abd blocks (abd-memcached.service,
# scripts/abd-run): installed as $(pkgdatadir)/abd-memcached.conf.
memcachedextdir = $(pkgdatadir)
dist_memcachedext_DATA = memcached-ext/abd-memcached.conf

# abd-mcx-rtt: the raw round trip of a block-sized mg at depth 1 and 16 and
# of a 64K read's multi-get, for scripts/bench's "limit" row.  Not
# installed: the bench runs it from the build tree.
noinst_PROGRAMS += memcached-ext/abd-mcx-rtt
memcached_ext_abd_mcx_rtt_SOURCES = memcached-ext/mcx-rtt.c
memcached_ext_abd_mcx_rtt_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/memcached-ext
memcached_ext_abd_mcx_rtt_LDADD = memcached-ext/libmcx.la
