// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl's side of the blktap2 kernel module (see kernel.h): the control
 * device's ioctls, and the nodes under /dev/xen/blktap-2, made with mknod
 * when devtmpfs did not make them (as older tap-ctls did).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "blktap-ring.h"
#include "kernel.h"
#include "tap-ctl.h"

/*
 * The number named @name in the section of @file that starts with the
 * line @section (NULL: the whole file), lines being "NUMBER NAME":
 * /proc/devices for majors, /proc/misc for misc minors.  0 and *@num, or
 * -errno.
 */
static int proc_number(const char *file, const char *section,
		       const char *name, unsigned int *num)
{
	FILE *f = fopen(file, "re");
	bool in = !section;
	char line[128];
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char dev[64];
		unsigned int n;

		if (section && !strncmp(line, section, strlen(section))) {
			in = true;
			continue;
		}
		/* Any other line but "NUMBER NAME" ends the section. */
		if (sscanf(line, "%u %63s", &n, dev) != 2) {
			in = !section;
			continue;
		}
		if (in && !strcmp(dev, name)) {
			*num = n;
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

static int proc_block_major(const char *name, unsigned int *major)
{
	return proc_number("/proc/devices", "Block devices:", name, major);
}

bool tck_module_loaded(void)
{
	unsigned int major;

	/* Without sysfs mounted, the major it registers tells as well. */
	return access(TCK_MODULE_SYSFS, F_OK) == 0 ||
	       proc_block_major(TCK_BLOCK_NAME, &major) == 0;
}

static int not_loaded(void)
{
	return tc_error(TC_EXIT_FAIL, "blktap2 kernel module is not loaded");
}

int tck_need_module(void)
{
	return tck_module_loaded() ? 0 : not_loaded();
}

/* "MAJOR:MINOR" from a sysfs dev attribute: 0 or -errno. */
static int read_devnum(const char *file, dev_t *dev)
{
	unsigned int ma, mi;
	char buf[32];
	ssize_t n;
	int fd = open(file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (sscanf(buf, "%u:%u", &ma, &mi) != 2)
		return -EINVAL;
	*dev = makedev(ma, mi);
	return 0;
}

/* Make the directories leading to @path (mode 0755). */
static int make_parents(const char *path)
{
	char dir[256];
	size_t len = strlen(path);

	if (len >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, len + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

static bool node_is(const struct stat *st, mode_t type, dev_t dev)
{
	return (st->st_mode & S_IFMT) == type && st->st_rdev == dev;
}

/* The nodes tap-ctl may have to make. */
enum node { NODE_CONTROL, NODE_RING, NODE_TAPDEV };

/*
 * The device number of a node, from sysfs; from /proc when sysfs is not
 * mounted (the misc minor of the control device, and the majors of the
 * others, whose minors are the tap's).  0 or -errno, @where naming the
 * place that was asked.
 */
static int dev_number(enum node node, unsigned int n, dev_t *dev,
		      char *where, size_t size)
{
	unsigned int num;
	int err;

	switch (node) {
	case NODE_CONTROL:
		snprintf(where, size, "%s", TCK_CONTROL_SYSFS);
		break;
	case NODE_RING:
		snprintf(where, size, TCK_RING_SYSFS_FMT, n);
		break;
	case NODE_TAPDEV:
		snprintf(where, size, TCK_TAPDEV_SYSFS_FMT, n);
		break;
	}
	err = read_devnum(where, dev);
	/* A sysfs that lacks the device is right: it does not exist. */
	if (!err || access("/sys/class", F_OK) == 0)
		return err;
	switch (node) {
	case NODE_CONTROL:
		snprintf(where, size, "/proc/misc");
		err = proc_number(where, NULL, TCK_CONTROL_NAME, &num);
		*dev = makedev(TCK_MISC_MAJOR, num);
		break;
	case NODE_RING:
		snprintf(where, size, "/proc/devices");
		err = proc_number(where, "Character devices:", TCK_RING_NAME,
				  &num);
		*dev = makedev(num, n);
		break;
	case NODE_TAPDEV:
		snprintf(where, size, "/proc/devices");
		err = proc_block_major(TCK_BLOCK_NAME, &num);
		*dev = makedev(num, n);
		break;
	}
	return err;
}

/*
 * Make @path the node of @node (tap @n), unless it is that already.  A
 * node whose number cannot be checked is trusted when its type is right.
 */
static int ensure_node(const char *path, enum node node, unsigned int n)
{
	mode_t type = node == NODE_TAPDEV ? S_IFBLK : S_IFCHR;
	struct stat st;
	bool exists = stat(path, &st) == 0;
	char where[64];
	dev_t dev = 0;
	int err = dev_number(node, n, &dev, where, sizeof(where));

	if (err) {
		if (exists && (st.st_mode & S_IFMT) == type)
			return 0;
		return tc_error(TC_EXIT_FAIL, "%s is missing, and %s does not "
				"give its device number: %s", path, where,
				strerror(-err));
	}
	if (exists && node_is(&st, type, dev))
		return 0;
	/* Missing, or left by an earlier load of the module: make it. */
	err = make_parents(path);
	if (err)
		return tc_error(TC_EXIT_FAIL, "cannot make the directory of "
				"%s: %s", path, strerror(-err));
	if (exists && unlink(path) < 0 && errno != ENOENT)
		return tc_error(TC_EXIT_FAIL, "cannot remove the stale %s: %s",
				path, strerror(errno));
	if (mknod(path, type | 0600, dev) == 0)
		return 0;
	err = errno;
	/* devtmpfs (or udev) may have made it meanwhile. */
	if (err == EEXIST && stat(path, &st) == 0 && node_is(&st, type, dev))
		return 0;
	return tc_error(TC_EXIT_FAIL, "cannot make %s (%u:%u): %s", path,
			major(dev), minor(dev), strerror(err));
}

int tck_open_control(int *fd)
{
	int rc;

	if (!tck_module_loaded())
		return not_loaded();
	rc = ensure_node(BLKTAP2_CONTROL, NODE_CONTROL, 0);
	if (rc)
		return rc;
	*fd = open(BLKTAP2_CONTROL, O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return tc_error(TC_EXIT_FAIL, "cannot open %s: %s",
				BLKTAP2_CONTROL, strerror(errno));
	return 0;
}

static int free_minor(int fd, unsigned int minor)
{
	int err = 0;

	while (ioctl(fd, BLKTAP2_IOC_FREE_TAP, (unsigned long)minor) < 0) {
		err = errno;
		if (err != EINTR)
			break;
		err = 0;
	}
	return -err;
}

int tck_allocate(unsigned int *minor)
{
	struct blktap2_alloc a = { 0 };
	char ring[64];
	int fd, rc;

	rc = tck_open_control(&fd);
	if (rc)
		return rc;
	if (ioctl(fd, BLKTAP2_IOC_ALLOC_TAP, &a) < 0) {
		rc = tc_error(TC_EXIT_FAIL, "cannot allocate a tap: %s",
			      strerror(errno));
		close(fd);
		return rc;
	}
	/* tapdisk opens the ring node: it must be there before it runs. */
	snprintf(ring, sizeof(ring), BLKTAP2_RING_FMT, a.minor);
	rc = ensure_node(ring, NODE_RING, a.minor);
	if (rc)
		free_minor(fd, a.minor);
	close(fd);
	if (!rc)
		*minor = a.minor;
	return rc;
}

int tck_release(unsigned int minor)
{
	int fd, err;

	fd = open(BLKTAP2_CONTROL, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = free_minor(fd, minor);
	close(fd);
	return err;
}

int tck_free(unsigned int minor)
{
	int fd, rc, err;

	rc = tck_open_control(&fd);
	if (rc)
		return rc;
	err = free_minor(fd, minor);
	close(fd);
	if (err == -ENOENT)
		return tc_error(TC_EXIT_FAIL, "minor %u is not allocated",
				minor);
	if (err == -EBUSY)
		return tc_error(TC_EXIT_FAIL, "minor %u is in use (a tapdisk "
				"is attached, or tapdev%u is open); not freed",
				minor, minor);
	if (err)
		return tc_error(TC_EXIT_FAIL, "cannot free minor %u: %s",
				minor, strerror(-err));
	return 0;
}

int tck_block_major(unsigned int *major)
{
	int err;

	if (!tck_module_loaded())
		return not_loaded();
	err = proc_block_major(TCK_BLOCK_NAME, major);
	if (err == -ENOENT)
		return tc_error(TC_EXIT_FAIL, "blktap2 is loaded, but "
				"/proc/devices has no '%s' block major",
				TCK_BLOCK_NAME);
	if (err)
		return tc_error(TC_EXIT_FAIL, "cannot read /proc/devices: %s",
				strerror(-err));
	return 0;
}

int tck_tapdev_node(unsigned int minor, char *path, size_t size)
{
	snprintf(path, size, BLKTAP2_TAPDEV_FMT, minor);
	return ensure_node(path, NODE_TAPDEV, minor);
}

int tck_check(void)
{
	char where[64];
	struct stat st;
	dev_t dev;

	if (!tck_module_loaded())
		return not_loaded();
	if (stat(BLKTAP2_CONTROL, &st) < 0)
		return tc_error(TC_EXIT_FAIL, "blktap2 is loaded, but %s is "
				"missing (%s; tap-ctl makes it when needed)",
				BLKTAP2_CONTROL, strerror(errno));
	if (!S_ISCHR(st.st_mode))
		return tc_error(TC_EXIT_FAIL, "blktap2 is loaded, but %s is "
				"not a character device", BLKTAP2_CONTROL);
	if (dev_number(NODE_CONTROL, 0, &dev, where, sizeof(where)) == 0 &&
	    st.st_rdev != dev)
		return tc_error(TC_EXIT_FAIL, "blktap2 is loaded, but %s is "
				"stale (%u:%u, the module's is %u:%u)",
				BLKTAP2_CONTROL, major(st.st_rdev),
				minor(st.st_rdev), major(dev), minor(dev));
	return 0;
}

int tck_link_devname(const char *devname, unsigned int minor)
{
	char target[64];

	snprintf(target, sizeof(target), BLKTAP2_TAPDEV_FMT, minor);
	if (symlink(target, devname) < 0)
		return tc_error(TC_EXIT_FAIL, "cannot make %s a link to %s: %s",
				devname, target, strerror(errno));
	return 0;
}

void tck_wait_gone(pid_t pid)
{
	const struct timespec tick = { .tv_nsec = 20 * 1000 * 1000 };
	char sock[256];

	snprintf(sock, sizeof(sock), "%s/ctl%d", tdc_dir(), (int)pid);
	/* Its socket goes just before it exits (a zombie keeps its pid). */
	for (int i = 0; i < TCK_WAIT_GONE_MS / 20; i++) {
		if (access(sock, F_OK) < 0 ||
		    (kill(pid, 0) < 0 && errno == ESRCH))
			return;
		nanosleep(&tick, NULL);
	}
}
