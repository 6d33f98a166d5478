# SPDX-License-Identifier: BSD-3-Clause
bin_PROGRAMS += abdctl/abdctl
abdctl_abdctl_SOURCES = abdctl/abdctl.c abdctl/abdctl.h abdctl/answer.c \
	abdctl/show.c abdctl/progress.c abdctl/metrics.c common/control.h \
	common/privfile.c common/privfile.h
# abdctl store-info reads a store file with the store's own code
# (filters/async/store/storefile.c: only that is linked from the library).
abdctl_abdctl_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/filters/async/store
abdctl_abdctl_LDADD = filters/async/store/libabdstore.la $(XXHASH_LIBS)

# Bash completion, installed where bash-completion looks for it by
# command name.
bashcompdir = $(datadir)/bash-completion/completions
EXTRA_DIST += abdctl/abdctl.bash-completion
install-data-local: install-abdctl-completion
install-abdctl-completion:
	$(MKDIR_P) '$(DESTDIR)$(bashcompdir)'
	$(INSTALL_DATA) '$(srcdir)/abdctl/abdctl.bash-completion' \
	  '$(DESTDIR)$(bashcompdir)/abdctl'
uninstall-local: uninstall-abdctl-completion
uninstall-abdctl-completion:
	rm -f '$(DESTDIR)$(bashcompdir)/abdctl'
.PHONY: install-abdctl-completion uninstall-abdctl-completion
