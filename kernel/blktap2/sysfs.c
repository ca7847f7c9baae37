// SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
/*
 * Class blktap2: the blktapN ring nodes (devtmpfs puts them in
 * /dev/xen/blktap-2/), a directory of attributes per tap
 * (/sys/class/blktap2/blktapN/) and the list of all taps
 * (/sys/class/blktap2/devices).
 */
#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "blktap.h"
#include "compat.h"

static char *blktap_devnode(BLKTAP_DEVNODE_CONST struct device *dev,
			    umode_t *mode)
{
	return kasprintf(GFP_KERNEL, "xen/blktap-2/%s", dev_name(dev));
}

/* With tap->slock held. */
const char *blktap_state_name(struct blktap *tap)
{
	switch (tap->dev_state) {
	case BLKTAP_DEV_NONE:
		return tap->ring.mem ? "ring" : "idle";
	case BLKTAP_DEV_RUNNING:
		return tap->ring.failed ? "failed" : "running";
	case BLKTAP_DEV_RECOVERING:
		return "recovering";
	case BLKTAP_DEV_DEAD:
		return "dead";
	}
	return "unknown";
}

/* A label for tools (e.g. the image); tapdevN until one is written. */
static ssize_t name_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);
	ssize_t n;

	mutex_lock(&tap->lock);
	if (tap->name[0])
		n = sysfs_emit(buf, "%s\n", tap->name);
	else
		n = sysfs_emit(buf, "tapdev%d\n", tap->minor);
	mutex_unlock(&tap->lock);
	return n;
}

static ssize_t name_store(struct device *dev, struct device_attribute *attr,
			  const char *buf, size_t count)
{
	struct blktap *tap = dev_get_drvdata(dev);
	size_t len = count;

	if (len && buf[len - 1] == '\n')
		len--;
	if (len >= BLKTAP_NAME_LEN)
		return -ENAMETOOLONG;
	if (memchr(buf, '\n', len))
		return -EINVAL;		/* one line per tap in "devices" */
	mutex_lock(&tap->lock);
	memcpy(tap->name, buf, len);
	tap->name[len] = '\0';
	mutex_unlock(&tap->lock);
	return count;
}
static DEVICE_ATTR_RW(name);

/* The tapdisk's pid; empty when no tapdisk has the ring open. */
static ssize_t task_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);
	ssize_t n;

	mutex_lock(&tap->lock);
	if (tap->task)
		n = sysfs_emit(buf, "%d\n", pid_nr(tap->task));
	else
		n = sysfs_emit(buf, "\n");
	mutex_unlock(&tap->lock);
	return n;
}
static DEVICE_ATTR_RO(task);

static ssize_t state_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);
	unsigned long flags;
	const char *state;

	spin_lock_irqsave(&tap->slock, flags);
	state = blktap_state_name(tap);
	spin_unlock_irqrestore(&tap->slock, flags);
	return sysfs_emit(buf, "%s\n", state);
}
static DEVICE_ATTR_RO(state);

/* Applies from the next time a tapdisk goes away. */
static ssize_t recovery_ms_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%u\n", READ_ONCE(tap->recovery_ms));
}

static ssize_t recovery_ms_store(struct device *dev,
				 struct device_attribute *attr,
				 const char *buf, size_t count)
{
	struct blktap *tap = dev_get_drvdata(dev);
	unsigned int ms;
	int err;

	err = kstrtouint(buf, 0, &ms);
	if (err)
		return err;
	if (ms > BLKTAP_MAX_RECOVERY_MS)
		return -ERANGE;
	mutex_lock(&tap->lock);
	WRITE_ONCE(tap->recovery_ms, ms);
	mutex_unlock(&tap->lock);
	return count;
}
static DEVICE_ATTR_RW(recovery_ms);

static struct attribute *blktap_attrs[] = {
	&dev_attr_name.attr,
	&dev_attr_task.attr,
	&dev_attr_state.attr,
	&dev_attr_recovery_ms.attr,
	NULL,
};

static const struct attribute_group blktap_group = {
	.attrs = blktap_attrs,
};

/* Counters in stats/, one value per file; ea->var is the counter. */
static ssize_t blktap_stat_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	struct dev_ext_attribute *ea =
		container_of(attr, struct dev_ext_attribute, attr);
	struct blktap *tap = dev_get_drvdata(dev);
	unsigned long stat = (unsigned long)ea->var, flags;
	u64 v;

	spin_lock_irqsave(&tap->slock, flags);
	v = tap->stats[stat];
	spin_unlock_irqrestore(&tap->slock, flags);
	return sysfs_emit(buf, "%llu\n", v);
}

#define BLKTAP_STAT_ATTR(_name, _stat)					\
	{ __ATTR(_name, 0444, blktap_stat_show, NULL), (void *)(_stat) }

static struct dev_ext_attribute blktap_stat_attrs[] = {
	BLKTAP_STAT_ATTR(requests, BLKTAP_STAT_REQUESTS),
	BLKTAP_STAT_ATTR(bad_responses, BLKTAP_STAT_BAD_RESPONSES),
	BLKTAP_STAT_ATTR(bad_status, BLKTAP_STAT_BAD_STATUS),
	BLKTAP_STAT_ATTR(ring_failures, BLKTAP_STAT_RING_FAILURES),
	BLKTAP_STAT_ATTR(held, BLKTAP_STAT_HELD),
	BLKTAP_STAT_ATTR(recoveries, BLKTAP_STAT_RECOVERIES),
	BLKTAP_STAT_ATTR(inflight, BLKTAP_STAT_INFLIGHT),
	BLKTAP_STAT_ATTR(max_sectors, BLKTAP_STAT_MAX_SECTORS),
};

static struct attribute *blktap_stats_attrs[BLKTAP_NR_STATS + 1];

static const struct attribute_group blktap_stats_group = {
	.name = "stats",
	.attrs = blktap_stats_attrs,
};

const struct attribute_group *blktap_groups[] = {
	&blktap_group,
	&blktap_stats_group,
	NULL,
};

struct blktap_list {
	char	*buf;
	int	len;
	bool	full;
};

/* With blktap_lock held (blktap_visit_taps). */
static void blktap_list_one(struct blktap *tap, void *arg)
{
	struct blktap_list *l = arg;
	char line[BLKTAP_NAME_LEN + 48];
	unsigned long flags;
	const char *state;
	int n;

	if (l->full)
		return;
	mutex_lock(&tap->lock);
	spin_lock_irqsave(&tap->slock, flags);
	state = blktap_state_name(tap);
	spin_unlock_irqrestore(&tap->slock, flags);
	if (tap->name[0])
		n = scnprintf(line, sizeof(line), "%d %s %s\n", tap->minor,
			      state, tap->name);
	else
		n = scnprintf(line, sizeof(line), "%d %s tapdev%d\n",
			      tap->minor, state, tap->minor);
	mutex_unlock(&tap->lock);
	/* Whole lines only, and room for the mark that some were left out. */
	if (l->len + n > PAGE_SIZE - 5) {
		l->full = true;
		l->len += sysfs_emit_at(l->buf, l->len, "...\n");
		return;
	}
	memcpy(l->buf + l->len, line, n);
	l->len += n;
}

/* One line per tap: "minor state name". */
static ssize_t devices_show(BLKTAP_CLASS_CONST struct class *class,
			    BLKTAP_CLASS_CONST struct class_attribute *attr,
			    char *buf)
{
	struct blktap_list l = { .buf = buf };

	blktap_visit_taps(blktap_list_one, &l);
	return l.len;
}
static CLASS_ATTR_RO(devices);

static struct attribute *blktap_class_attrs[] = {
	&class_attr_devices.attr,
	NULL,
};
ATTRIBUTE_GROUPS(blktap_class);

struct class blktap_class = {
	.name		= "blktap2",
	.class_groups	= blktap_class_groups,
	.devnode	= blktap_devnode,
};

int blktap_sysfs_init(void)
{
	int err, i;

	BUILD_BUG_ON(ARRAY_SIZE(blktap_stat_attrs) != BLKTAP_NR_STATS);
	for (i = 0; i < BLKTAP_NR_STATS; i++)
		blktap_stats_attrs[i] = &blktap_stat_attrs[i].attr.attr;
	err = class_register(&blktap_class);

	if (err)
		pr_err("blktap2: cannot register class: %d\n", err);
	return err;
}

void blktap_sysfs_exit(void)
{
	class_unregister(&blktap_class);
}
