# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-powercut-plugin: a disk with a volatile write cache, for tests of
# flush promises (what a power cut keeps).
plugin_LTLIBRARIES += plugins/powercut/nbdkit-powercut-plugin.la
plugins_powercut_nbdkit_powercut_plugin_la_SOURCES = \
	plugins/powercut/powercut.c \
	plugins/powercut/cache.c plugins/powercut/cache.h
plugins_powercut_nbdkit_powercut_plugin_la_CFLAGS = $(AM_CFLAGS) \
	$(NBDKIT_CFLAGS)
plugins_powercut_nbdkit_powercut_plugin_la_LDFLAGS = $(PLUGIN_LDFLAGS)
