/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the control channel's commands (commands.c). */

#ifndef ABD_ASYNC_COMMANDS_H
#define ABD_ASYNC_COMMANDS_H

#include "control.h"

/* A ctl_handler (common/control.h): OPAQUE is the store. */
int commands_handler (void *opaque, int argc, char **argv,
                      struct ctl_reply *r);

#endif /* ABD_ASYNC_COMMANDS_H */
