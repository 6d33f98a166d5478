# SPDX-License-Identifier: BSD-3-Clause
# Man pages are written in POD and built with pod2man.
man_MANS += man/nbdkit-async-filter.1 man/nbdkit-memcache-filter.1 \
	man/nbdkit-powercut-plugin.1 man/abdctl.1 man/abd.7
EXTRA_DIST += man/nbdkit-async-filter.pod man/nbdkit-memcache-filter.pod \
	man/nbdkit-powercut-plugin.pod man/abdctl.pod man/abd.pod
CLEANFILES += $(man_MANS)

man/%.1: man/%.pod
	@mkdir -p man
	$(AM_V_GEN)$(POD2MAN) --section=1 --center="abd" --release="abd-$(VERSION)" \
	  --name=$(basename $(notdir $@)) $< > $@.t && mv $@.t $@

man/%.7: man/%.pod
	@mkdir -p man
	$(AM_V_GEN)$(POD2MAN) --section=7 --center="abd" --release="abd-$(VERSION)" \
	  --name=$(basename $(notdir $@)) $< > $@.t && mv $@.t $@
