// SPDX-License-Identifier: LGPL-2.1-or-later
/* Xen virtual block device names <-> device ids (xen-vdev.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "xen-vdev.h"

#define XVD_MAJOR	202u
#define HD0_MAJOR	3u	/* hda, hdb */
#define HD1_MAJOR	22u	/* hdc, hdd */
#define SD_MAJOR	8u
#define EXT_FLAG	(1u << 28)	/* the extended xvd encoding */
#define EXT_DISKS	(1u << 20)
#define EXT_PARTS	256u

/*
 * A decimal number without sign or leading zero, below @limit, from
 * *s on: advances *s past it.  -1 when there is none or it is too big.
 */
static long number(const char **s, unsigned long limit)
{
	const char *p = *s;
	unsigned long v = 0;

	if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned long)(*p - '0');
		if (v >= limit)
			return -1;
	}
	*s = p;
	return (long)v;
}

/* An optional partition number (1 and up) that ends the name; 0 if none. */
static long partition(const char *s, unsigned long limit)
{
	long part;

	if (!*s)
		return 0;
	part = number(&s, limit);
	if (part <= 0 || *s)
		return -1;
	return part;
}

static int xvd(unsigned long disk, long part, uint32_t *devid)
{
	if (part < 0)
		return -EINVAL;
	if (disk < 16 && part < 16)
		*devid = XVD_MAJOR << 8 | (uint32_t)disk << 4 | (uint32_t)part;
	else if (disk < EXT_DISKS && part < (long)EXT_PARTS)
		*devid = EXT_FLAG | (uint32_t)disk << 8 | (uint32_t)part;
	else
		return -EINVAL;
	return 0;
}

int xen_vdev_parse(const char *name, uint32_t *devid)
{
	const char *p = name;
	unsigned long disk = 0;
	long v, part;

	if (!name || !*name)
		return -EINVAL;
	if (*name >= '0' && *name <= '9') {
		v = number(&p, 1ul << 31);
		if (v <= 0 || *p)
			return -EINVAL;
		*devid = (uint32_t)v;
		return 0;
	}
	if (!strncmp(name, "xvd", 3)) {
		/* Bijective base 26: a = 1, z = 26, aa = 27; the disk is that - 1. */
		for (p = name + 3; *p >= 'a' && *p <= 'z'; p++) {
			disk = disk * 26 + (unsigned long)(*p - 'a' + 1);
			if (disk > EXT_DISKS)
				return -EINVAL;
		}
		if (p == name + 3)
			return -EINVAL;
		return xvd(disk - 1, partition(p, EXT_PARTS), devid);
	}
	if (!strncmp(name, "hd", 2) || !strncmp(name, "sd", 2)) {
		int hd = name[0] == 'h';
		unsigned int max_disk = hd ? 4 : 16;

		if (name[2] < 'a' || name[2] >= (char)('a' + max_disk))
			return -EINVAL;
		disk = (unsigned long)(name[2] - 'a');
		part = partition(name + 3, hd ? 64 : 16);
		if (part < 0)
			return -EINVAL;
		if (hd)
			*devid = (disk < 2 ? HD0_MAJOR : HD1_MAJOR) << 8 |
				 (uint32_t)(disk & 1) << 6 | (uint32_t)part;
		else
			*devid = SD_MAJOR << 8 | (uint32_t)disk << 4 | (uint32_t)part;
		return 0;
	}
	if (name[0] == 'd') {
		p = name + 1;
		v = number(&p, EXT_DISKS);
		if (v < 0)
			return -EINVAL;
		if (!*p)
			return xvd((unsigned long)v, 0, devid);
		if (*p != 'p')
			return -EINVAL;
		p++;
		part = number(&p, EXT_PARTS);
		if (part <= 0 || *p)
			return -EINVAL;
		return xvd((unsigned long)v, part, devid);
	}
	return -EINVAL;
}

static int put(char *buf, size_t len, const char *prefix, const char *disk,
	       uint32_t part)
{
	int n;

	if (part)
		n = snprintf(buf, len, "%s%s%u", prefix, disk, part);
	else
		n = snprintf(buf, len, "%s%s", prefix, disk);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int xen_vdev_name(uint32_t devid, char *buf, size_t len)
{
	char letters[8], rev[8];
	uint32_t major = devid >> 8, minor = devid & 0xff, disk, part;
	size_t i = 0, j;
	int n;

	if ((devid & ~(EXT_FLAG - 1)) == EXT_FLAG) {
		disk = (devid >> 8) & (EXT_DISKS - 1);
		part = devid & (EXT_PARTS - 1);
	} else if (major == XVD_MAJOR) {
		disk = minor >> 4;
		part = minor & 15;
	} else if (major == HD0_MAJOR || major == HD1_MAJOR) {
		letters[0] = (char)('a' + (major == HD1_MAJOR) * 2 + (minor >> 6 & 1));
		letters[1] = '\0';
		/* Minors of 128 and up are no hd disk. */
		if (minor >> 7)
			goto number;
		return put(buf, len, "hd", letters, minor & 63);
	} else if (major == SD_MAJOR) {
		letters[0] = (char)('a' + (minor >> 4));
		letters[1] = '\0';
		return put(buf, len, "sd", letters, minor & 15);
	} else {
		goto number;
	}
	/* The disk index in bijective base 26. */
	for (disk++; disk; disk = (disk - 1) / 26)
		rev[i++] = (char)('a' + (disk - 1) % 26);
	for (j = 0; j < i; j++)
		letters[j] = rev[i - 1 - j];
	letters[i] = '\0';
	return put(buf, len, "xvd", letters, part);
number:
	n = snprintf(buf, len, "%u", devid);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}
