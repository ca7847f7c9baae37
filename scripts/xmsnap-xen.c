// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmsnap-xen: what scripts/xmsnap asks of Xen, through libxenstore and
 * libxenctrl (man/xmsnap-xen.8).
 *
 *   xmsnap-xen disk DOMAIN VDEV    the block device blkback exports as VDEV
 *   xmsnap-xen disks DOMAIN        "VDEV DEVICE" for each of its disks
 *   xmsnap-xen pause DOMAIN        pause the domain (xc_domain_pause)
 *   xmsnap-xen unpause DOMAIN      unpause it
 *
 * DOMAIN is a name (/local/domain/N/name) or a domid.  A disk is found
 * from the frontend: /local/domain/D/device/vbd/DEVID/backend names
 * blkback's directory (dom0's /local/domain/0/backend/vbd/D/DEVID when the
 * frontend has none), whose physical-device (major:minor in hex, what
 * blkback opens) decides which node is the disk: physical-device-path,
 * params, or the node sysfs names for that number.  Without
 * physical-device (the hotplug script has not run), params must be a
 * block device.
 *
 * Exit status: 0; 1 when something is not there or Xen refuses; 2 for bad
 * usage.  Every failure is one line on stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenstore.h>

#include "xen-vdev.h"

#define PROG "xmsnap-xen"

struct domain {
	unsigned int domid;
	char *name;		/* from xenstore; the domid when it has none */
};

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int usage(void)
{
	printf(
		"usage: " PROG " disk DOMAIN VDEV   print the block device blkback exports as VDEV\n"
		"       " PROG " disks DOMAIN       print \"VDEV DEVICE\" for each disk of DOMAIN\n"
		"       " PROG " pause DOMAIN       pause DOMAIN (libxenctrl)\n"
		"       " PROG " unpause DOMAIN     unpause DOMAIN\n"
		"DOMAIN is a domain name or a domid; VDEV is xvda, xvdb1, hdc, sda, d0p1\n"
		"or a device id.\n");
	return 0;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		err("out of memory");
		exit(1);
	}
	return s;
}

/*
 * Read @path: the value (malloc'd), or NULL with errno ENOENT when it is
 * not there.  Any other failure is reported here, once, and ends the
 * program: xenstore went away under us.
 */
static char *xread(struct xs_handle *xs, const char *path)
{
	unsigned int len;
	char *v = xs_read(xs, XBT_NULL, path, &len);

	if (!v && errno != ENOENT) {
		err("xenstore: cannot read %s: %s", path, strerror(errno));
		exit(1);
	}
	if (!v)
		errno = ENOENT;
	return v;
}

/* Like xread for a directory: its entries (one malloc'd block) or NULL. */
static char **xdir(struct xs_handle *xs, const char *path, unsigned int *n)
{
	char **d = xs_directory(xs, XBT_NULL, path, n);

	if (!d && errno != ENOENT) {
		err("xenstore: cannot list %s: %s", path, strerror(errno));
		exit(1);
	}
	if (!d) {
		*n = 0;
		errno = ENOENT;
	}
	return d;
}

/* A domid: decimal digits only, below DOMID_FIRST_RESERVED. */
static bool parse_domid(const char *s, unsigned int *domid)
{
	unsigned long v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v >= DOMID_FIRST_RESERVED)
			return false;
	}
	*domid = (unsigned int)v;
	return true;
}

/* Find DOMAIN (a name or a domid) in xenstore.  0, or 1 after an error line. */
static int find_domain(struct xs_handle *xs, const char *arg, struct domain *d)
{
	unsigned int n, i, id;
	char **dir, *path, *name;

	if (parse_domid(arg, &id)) {
		path = xasprintf("/local/domain/%u", id);
		name = xread(xs, path);
		free(path);
		if (!name) {
			err("no such domain: %s (no /local/domain/%u in xenstore)", arg, id);
			return 1;
		}
		free(name);
		path = xasprintf("/local/domain/%u/name", id);
		name = xread(xs, path);
		free(path);
		d->domid = id;
		d->name = name ? name : xasprintf("%u", id);
		return 0;
	}
	dir = xdir(xs, "/local/domain", &n);
	for (i = 0; i < n; i++) {
		if (!parse_domid(dir[i], &id))
			continue;
		path = xasprintf("/local/domain/%u/name", id);
		name = xread(xs, path);
		free(path);
		if (name && !strcmp(name, arg)) {
			d->domid = id;
			d->name = name;
			free(dir);
			return 0;
		}
		free(name);
	}
	free(dir);
	err("no such domain: %s", arg);
	return 1;
}

/* @path when it is a block device, with rdev @want unless that is 0. */
static bool is_disk(const char *path, dev_t want)
{
	struct stat st;

	return path && !stat(path, &st) && S_ISBLK(st.st_mode) &&
	       (!want || st.st_rdev == want);
}

/* The node sysfs names for block device @dev: /dev/DEVNAME (malloc'd) or NULL. */
static char *sysfs_node(dev_t dev)
{
	char *path = xasprintf("/sys/dev/block/%u:%u/uevent", major(dev), minor(dev));
	char line[512], *node = NULL;
	FILE *f = fopen(path, "r");

	free(path);
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "DEVNAME=", 8)) {
			line[strcspn(line, "\n")] = '\0';
			node = xasprintf("/dev/%s", line + 8);
			break;
		}
	}
	fclose(f);
	return node;
}

struct disk {
	char vdev[32];		/* as the configuration names it */
	char *node;		/* the block device blkback exports */
	bool cdrom;
};

/*
 * Find disk @devid of @d.  0; 1 after an error line; -ENOENT (and no line)
 * when the domain has no such disk.
 */
static int find_disk(struct xs_handle *xs, const struct domain *d, uint32_t devid,
		     struct disk *disk)
{
	char *fe = xasprintf("/local/domain/%u/device/vbd/%u", d->domid, devid);
	char *p, *be, *params, *pd, *pdp, *type, *dev, *cand[3];
	unsigned int ma, mi;
	dev_t want = 0;
	int rc = 1;
	char c;

	p = xasprintf("%s/backend", fe);
	be = xread(xs, p);
	free(p);
	if (!be) {
		p = xread(xs, fe);
		if (!p) {
			free(fe);
			return -ENOENT;
		}
		free(p);
		be = xasprintf("/local/domain/0/backend/vbd/%u/%u", d->domid, devid);
	}
	free(fe);
	p = xasprintf("%s/dev", be);
	dev = xread(xs, p);
	free(p);
	if (!dev || strlen(dev) >= sizeof(disk->vdev) ||
	    xen_vdev_parse(dev, &(uint32_t){ 0 }))
		xen_vdev_name(devid, disk->vdev, sizeof(disk->vdev));
	else
		strcpy(disk->vdev, dev);
	free(dev);
	p = xasprintf("%s/device-type", be);
	type = xread(xs, p);
	free(p);
	disk->cdrom = type && !strcmp(type, "cdrom");
	free(type);
	p = xasprintf("%s/params", be);
	params = xread(xs, p);
	free(p);
	p = xasprintf("%s/physical-device", be);
	pd = xread(xs, p);
	free(p);
	p = xasprintf("%s/physical-device-path", be);
	pdp = xread(xs, p);
	free(p);

	if (pd) {
		if (sscanf(pd, "%x:%x%c", &ma, &mi, &c) != 2) {
			err("domain %s disk %s: %s/physical-device is '%s', not MAJOR:MINOR",
			    d->name, disk->vdev, be, pd);
			goto out;
		}
		want = makedev(ma, mi);
	} else if (!params) {
		err("domain %s disk %s: %s has neither params nor physical-device",
		    d->name, disk->vdev, be);
		goto out;
	}
	cand[0] = pdp;
	pdp = NULL;
	cand[1] = !params || !*params ? NULL :
		  params[0] == '/' ? xasprintf("%s", params) : xasprintf("/dev/%s", params);
	cand[2] = want ? sysfs_node(want) : NULL;
	for (int i = 0; i < 3 && rc; i++) {
		if (is_disk(cand[i], want)) {
			disk->node = cand[i];
			cand[i] = NULL;
			rc = 0;
		}
	}
	for (int i = 0; i < 3; i++)
		free(cand[i]);
	if (rc && want)
		err("domain %s disk %s: no block device %x:%x (physical-device of %s) in /dev; params is '%s'",
		    d->name, disk->vdev, ma, mi, be, params ? params : "");
	else if (rc)
		err("domain %s disk %s: params '%s' of %s is not a block device",
		    d->name, disk->vdev, params, be);
out:
	free(be);
	free(params);
	free(pd);
	free(pdp);
	return rc;
}

static int cmd_disk(struct xs_handle *xs, const struct domain *d, const char *vdev)
{
	struct disk disk = { .node = NULL };
	uint32_t devid;
	int rc;

	if (xen_vdev_parse(vdev, &devid)) {
		err("'%s' is not a virtual disk name (xvda, xvdb1, hdc, sda, d0p1 or a device id)",
		    vdev);
		return 2;
	}
	rc = find_disk(xs, d, devid, &disk);
	if (rc == -ENOENT) {
		err("domain %s has no disk %s (no device/vbd/%u)", d->name, vdev, devid);
		return 1;
	}
	if (rc)
		return 1;
	printf("%s\n", disk.node);
	free(disk.node);
	return 0;
}

static int by_number(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static int cmd_disks(struct xs_handle *xs, const struct domain *d)
{
	char *path = xasprintf("/local/domain/%u/device/vbd", d->domid);
	unsigned int n, i, k = 0;
	char **dir = xdir(xs, path, &n);
	uint32_t *ids = calloc(n ? n : 1, sizeof(*ids));
	char *buf = NULL;
	size_t len = 0;
	int rc = 0, r;
	FILE *out;

	free(path);
	if (!ids) {
		err("out of memory");
		free(dir);
		return 1;
	}
	for (i = 0; i < n; i++) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(dir[i], &end, 10);
		if (!errno && *dir[i] && !*end && v <= UINT32_MAX)
			ids[k++] = (uint32_t)v;
	}
	free(dir);
	if (!k) {
		err("domain %s has no disks (no /local/domain/%u/device/vbd)", d->name,
		    d->domid);
		free(ids);
		return 1;
	}
	qsort(ids, k, sizeof(*ids), by_number);
	/* Printed only when every disk was found: all of them or nothing. */
	out = open_memstream(&buf, &len);
	if (!out) {
		err("out of memory");
		free(ids);
		return 1;
	}
	for (i = 0; i < k; i++) {
		struct disk disk = { .node = NULL };

		r = find_disk(xs, d, ids[i], &disk);
		if (r == -ENOENT)
			continue;	/* gone meanwhile */
		if (r) {
			rc = 1;
			break;
		}
		/* An empty CD-ROM has no device; none of them is a disk to snapshot. */
		if (!disk.cdrom)
			fprintf(out, "%s %s\n", disk.vdev, disk.node);
		free(disk.node);
	}
	free(ids);
	if (fclose(out)) {
		err("out of memory");
		rc = 1;
	}
	if (!rc)
		fputs(buf, stdout);
	free(buf);
	return rc;
}

static int cmd_pause(const struct domain *d, bool pause)
{
	const char *verb = pause ? "pause" : "unpause";
	xentoollog_logger *lg;
	xc_interface *xch;
	int rc, e;

	if (d->domid == 0) {
		err("%s: domain %s is dom0 (domid 0); it cannot be paused", verb, d->name);
		return 1;
	}
	/* libxenctrl's own messages would be a second line: only critical ones. */
	lg = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_CRITICAL, 0);
	xch = xc_interface_open(lg, lg, 0);
	if (!xch) {
		err("%s: cannot open libxenctrl (/dev/xen/privcmd): %s", verb, strerror(errno));
		xtl_logger_destroy(lg);
		return 1;
	}
	rc = pause ? xc_domain_pause(xch, d->domid) : xc_domain_unpause(xch, d->domid);
	e = errno;
	xc_interface_close(xch);
	xtl_logger_destroy(lg);
	if (rc) {
		if (e == ESRCH)
			err("%s: no such domain: %s (domid %u)", verb, d->name, d->domid);
		else if (!pause && e == EINVAL)
			err("unpause: domain %s (domid %u) is not paused", d->name, d->domid);
		else
			err("%s: domain %s (domid %u): %s", verb, d->name, d->domid, strerror(e));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	struct domain d = { .name = NULL };
	struct xs_handle *xs;
	int want, rc;

	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help"))
		return usage();
	if (!strcmp(cmd, "disk"))
		want = 4;
	else if (!strcmp(cmd, "disks") || !strcmp(cmd, "pause") || !strcmp(cmd, "unpause"))
		want = 3;
	else if (!*cmd) {
		err("no command (try -h)");
		return 2;
	} else {
		err("unknown command '%s' (try -h)", cmd);
		return 2;
	}
	if (argc != want) {
		err("%s: needs %s (try -h)", cmd,
		    want == 4 ? "DOMAIN VDEV" : "DOMAIN");
		return 2;
	}
	if (want == 4 && xen_vdev_parse(argv[3], &(uint32_t){ 0 })) {
		err("'%s' is not a virtual disk name (xvda, xvdb1, hdc, sda, d0p1 or a device id)",
		    argv[3]);
		return 2;
	}
	xs = xs_open(0);
	if (!xs) {
		err("cannot reach xenstore (is xenstored running? /dev/xen/xenbus or its socket): %s",
		    strerror(errno));
		return 1;
	}
	rc = find_domain(xs, argv[2], &d);
	if (!rc) {
		if (!strcmp(cmd, "disk"))
			rc = cmd_disk(xs, &d, argv[3]);
		else if (!strcmp(cmd, "disks"))
			rc = cmd_disks(xs, &d);
		else
			rc = cmd_pause(&d, !strcmp(cmd, "pause"));
	}
	free(d.name);
	xs_close(xs);
	if (!rc && (fflush(stdout) || ferror(stdout))) {
		err("cannot write the output: %s", strerror(errno));
		return 1;
	}
	return rc;
}
