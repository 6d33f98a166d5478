bin_PROGRAMS += abdctl/abdctl
abdctl_abdctl_SOURCES = abdctl/abdctl.c common/control.h
