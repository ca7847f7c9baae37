// SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
/*
 * blkback-pagemap: which Xen guest a page under block I/O came from.
 *
 * xen-blkback grant-maps the guest's pages and puts them in its bios as
 * they are.  gnttab_map_refs() marks each mapped page foreign and stores
 * the granting domain and grant reference in it, and gnttab_unmap_refs()
 * clears that; xen_page_foreign() reads it back.  So a driver below
 * blkback (blktap2) can tell whose I/O a request carries from its pages,
 * without any change to blkback.  This module is that lookup, and
 * counts what it saw.
 *
 * PG_foreign is PG_owner_priv_1, which other page owners use too
 * (PG_swapcache, PG_checked), and it means nothing on a compound page.
 * A grant-mapped page is never compound, swap-backed or in a mapping,
 * so such pages are not foreign whatever the bit says: only then is
 * page->private taken for (domid, gref).
 */
#include <linux/kobject.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/page-flags.h>
#include <linux/percpu.h>
#include <linux/sysfs.h>
#if IS_ENABLED(CONFIG_XEN)
#include <xen/grant_table.h>
#endif

#include "blkback-pagemap.h"

enum pagemap_stat {
	PAGEMAP_LOOKUPS,	/* calls */
	PAGEMAP_FOREIGN,	/* a guest's page */
	PAGEMAP_NOT_FOREIGN,	/* anything else */
	PAGEMAP_NR_STATS
};

/* Per CPU: the lookup runs for every request, on every CPU. */
struct pagemap_stats {
	u64	v[PAGEMAP_NR_STATS];
};

static DEFINE_PER_CPU(struct pagemap_stats, pagemap_stats);
static struct kobject *pagemap_kobj;

#if IS_ENABLED(CONFIG_XEN)
static bool pagemap_page_foreign(struct page *page,
				 struct blkback_pagemap_info *info)
{
	struct xen_page_foreign *foreign;

	/* Not compound, so the folio is the page itself. */
	if (PageCompound(page) || folio_test_swapbacked(page_folio(page)) ||
	    READ_ONCE(page->mapping))
		return false;
	foreign = xen_page_foreign(page);
	if (!foreign)
		return false;
	info->domid = foreign->domid;
	info->gref = foreign->gref;
	return true;
}
#else
/* Without Xen no page is a guest's. */
static bool pagemap_page_foreign(struct page *page,
				 struct blkback_pagemap_info *info)
{
	return false;
}
#endif

int blkback_pagemap_lookup(struct page *page,
			   struct blkback_pagemap_info *info)
{
	bool foreign = page && pagemap_page_foreign(page, info);

	this_cpu_inc(pagemap_stats.v[PAGEMAP_LOOKUPS]);
	this_cpu_inc(pagemap_stats.v[foreign ? PAGEMAP_FOREIGN :
				     PAGEMAP_NOT_FOREIGN]);
	return foreign ? 0 : -ENOENT;
}

/* GPL: symbol_get() only finds GPL exports on newer kernels. */
EXPORT_SYMBOL_GPL(blkback_pagemap_lookup);

static u64 pagemap_stat_sum(enum pagemap_stat s)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += READ_ONCE(per_cpu(pagemap_stats, cpu).v[s]);
	return sum;
}

static ssize_t pagemap_stat_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf);

static struct kobj_attribute pagemap_attrs[PAGEMAP_NR_STATS] = {
	[PAGEMAP_LOOKUPS]	= __ATTR(lookups, 0444, pagemap_stat_show, NULL),
	[PAGEMAP_FOREIGN]	= __ATTR(foreign, 0444, pagemap_stat_show, NULL),
	[PAGEMAP_NOT_FOREIGN]	= __ATTR(not_foreign, 0444, pagemap_stat_show,
					 NULL),
};

static ssize_t pagemap_stat_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n",
			  pagemap_stat_sum(attr - pagemap_attrs));
}

static struct attribute *pagemap_stat_attrs[] = {
	&pagemap_attrs[PAGEMAP_LOOKUPS].attr,
	&pagemap_attrs[PAGEMAP_FOREIGN].attr,
	&pagemap_attrs[PAGEMAP_NOT_FOREIGN].attr,
	NULL
};

static const struct attribute_group pagemap_stat_group = {
	.attrs	= pagemap_stat_attrs,
};

/* The counters: /sys/module/blkback_pagemap/stats/. */
static int __init blkback_pagemap_init(void)
{
	int err;

	pagemap_kobj = kobject_create_and_add("stats", &THIS_MODULE->mkobj.kobj);
	if (!pagemap_kobj)
		return -ENOMEM;
	err = sysfs_create_group(pagemap_kobj, &pagemap_stat_group);
	if (err) {
		kobject_put(pagemap_kobj);
		return err;
	}
	pr_info("blkback-pagemap: loaded (%s)\n",
		IS_ENABLED(CONFIG_XEN) ? "foreign pages from xen_page_foreign()" :
		"no Xen: no page is foreign");
	return 0;
}

static void __exit blkback_pagemap_exit(void)
{
	sysfs_remove_group(pagemap_kobj, &pagemap_stat_group);
	kobject_put(pagemap_kobj);
}

module_init(blkback_pagemap_init);
module_exit(blkback_pagemap_exit);

MODULE_DESCRIPTION("blkback-pagemap: the Xen guest (domid, gref) of a page under block I/O");
MODULE_LICENSE("GPL");
