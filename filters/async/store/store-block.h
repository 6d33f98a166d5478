/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the store's unit, shared by the store (store.h) and
 * its file (storefile.h): the block, and what a range of blocks holds.
 */

#ifndef ABD_ASYNC_STORE_BLOCK_H
#define ABD_ASYNC_STORE_BLOCK_H

#include <stdint.h>

#define STORE_BLOCK_SIZE 4096
#define STORE_MIN_SIZE (16 * STORE_BLOCK_SIZE)

/* Data (4 KiB in a slot), or whole blocks zeroed or trimmed (no data). */
enum store_kind { STORE_DATA, STORE_ZERO, STORE_TRIM };

#endif /* ABD_ASYNC_STORE_BLOCK_H */
