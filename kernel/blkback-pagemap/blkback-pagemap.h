/* SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later */
/*
 * blkback-pagemap: which Xen guest a page under block I/O came from.
 *
 * The API of blkback-pagemap.ko (see its README.md).  Callers that must
 * work without the module take the function with
 * symbol_get(blkback_pagemap_lookup) and drop it with symbol_put().
 */
#ifndef BLKBACK_PAGEMAP_H
#define BLKBACK_PAGEMAP_H

#include <linux/types.h>

struct page;

/* What xen-blkback's grant mapping recorded in the page. */
struct blkback_pagemap_info {
	u16	domid;	/* the guest that granted the page (domid_t) */
	u32	gref;	/* its grant reference (grant_ref_t) */
};

/*
 * Fills @info and returns 0 if @page is a guest's page that blkback
 * grant-mapped; -ENOENT if it is not (dom0's own memory, or a kernel
 * built without Xen).  Never sleeps; any context.  Counted in
 * /sys/module/blkback_pagemap/stats/.
 */
int blkback_pagemap_lookup(struct page *page,
			   struct blkback_pagemap_info *info);

#endif /* BLKBACK_PAGEMAP_H */
