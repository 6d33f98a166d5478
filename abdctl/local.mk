bin_PROGRAMS += abdctl/abdctl
abdctl_abdctl_SOURCES = abdctl/abdctl.c common/control.h \
	filters/async/storefile.c filters/async/storefile.h
abdctl_abdctl_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/filters/async
abdctl_abdctl_LDADD = $(XXHASH_LIBS)
