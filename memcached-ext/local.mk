# SPDX-License-Identifier: BSD-3-Clause
# abd memcached-ext: a small client for memcached's meta and text
# protocols, linked into the memcache filter (and its tests) as a
# convenience library.
noinst_LTLIBRARIES += memcached-ext/libmcx.la
memcached_ext_libmcx_la_SOURCES = \
	memcached-ext/meta.h \
	memcached-ext/meta-parse.c \
	memcached-ext/reply.h \
	memcached-ext/reply.c \
	memcached-ext/meta-conn.c \
	memcached-ext/sock.h \
	memcached-ext/sock.c \
	memcached-ext/text.h \
	memcached-ext/text-parse.c \
	memcached-ext/text-conn.c
memcached_ext_libmcx_la_CFLAGS = $(AM_CFLAGS)

# memcached's options for a server of abd blocks (abd-memcached.service,
# scripts/abd-run): installed as $(pkgdatadir)/abd-memcached.conf.
memcachedextdir = $(pkgdatadir)
dist_memcachedext_DATA = memcached-ext/abd-memcached.conf

# mcx-rtt: memcached's raw round trips for block reads (scripts/bench's
# limit rows; tests/test-mcx-rtt.sh).  Built, not installed.
noinst_PROGRAMS += memcached-ext/mcx-rtt
memcached_ext_mcx_rtt_SOURCES = memcached-ext/mcx-rtt.c
memcached_ext_mcx_rtt_LDADD = memcached-ext/libmcx.la
