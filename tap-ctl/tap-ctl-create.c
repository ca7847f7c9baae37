// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl create: a block device for an image in one step, as allocate +
 * spawn + attach + open, printing /dev/xen/blktap-2/tapdevN (or -d's
 * name).  A step that fails undoes the ones before it, so a failed create
 * leaves nothing behind; what could not be undone is named in the error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kernel.h"
#include "tap-ctl.h"

struct create_args {
	struct td_ctl_open	*o;
	const char		*image;		/* -a */
	const char		*devname;	/* -d */
};

static int create_flag(void *ctx, int opt, const char *arg)
{
	struct create_args *a = ctx;

	if (opt != 'd')
		return tc_open_flag(a->o, &a->image, opt, arg);
	if (*arg != '/')
		return tc_error(TC_EXIT_USAGE,
				"invalid -d devname '%s' (an absolute path)",
				arg);
	a->devname = arg;
	return 0;
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl create -a TYPE:/PATH [-d DEVNAME] [-R] [-e MINOR] [-t SECS] [-D] [-h]\n"
		 "  -d  also name the block device DEVNAME (a symlink), and print that\n"
		 "  -R  read-only    -e  secondary of MINOR    -t  request timeout (s)\n"
		 "  -D  no O_DIRECT\n",
	.flags = "a:d:Re:t:D",
	.flag = create_flag,
	.target = TC_TARGET_NONE,
};

/* How far create got: each stage is undone in reverse. */
enum stage { ALLOCATED, SPAWNED, ATTACHED, OPENED, LINKED };

/* Undo up to @s; what is left behind goes into @left (for the message). */
static void undo(enum stage s, const struct tc_target *t,
		 const char *devname, char *left, size_t size)
{
	static struct td_ctl_msg req;
	int err = 0;

	left[0] = '\0';
	if (s >= LINKED)
		unlink(devname);
	if (s >= OPENED) {
		/* Nobody can rely on a device that was never handed out. */
		memset(&req, 0, sizeof(req));
		req.flags = TD_CLOSE_FORCE;
		tc_request(t, TD_CTL_CLOSE, &req, NULL);
	}
	if (s >= ATTACHED)
		tc_request(t, TD_CTL_DETACH, NULL, NULL);
	if (s >= SPAWNED) {
		kill(t->pid, SIGTERM);
		/* Its ring closes as it exits: then the minor can go. */
		tck_wait_gone(t->pid);
	}
	err = tck_release((unsigned int)t->minor);
	if (err)
		snprintf(left, size, "; minor %d is left allocated (%s)",
			 t->minor, strerror(-err));
}

int tap_ctl_create(int argc, char **argv)
{
	static struct td_ctl_msg req;
	struct create_args a = { .o = &req.body.open };
	struct tc_target t = { .pid = 0, .minor = -1 };
	char path[64], msg[TD_ERRMSG_MAX + 128], left[128];
	const char *what;
	unsigned int minor;
	enum stage s;
	struct stat st;
	pid_t pid;
	int rc;

	req.body.open.secondary = -1;
	rc = tc_parse(argc, argv, &cmdline, &a, NULL);
	if (rc != TC_CONTINUE)
		return rc;
	if (!a.image)
		return tc_error(TC_EXIT_USAGE, "missing -a type:/path");
	rc = tc_open_params(a.o, a.image);
	if (rc)
		return rc;
	if (a.devname && lstat(a.devname, &st) == 0)
		return tc_error(TC_EXIT_FAIL, "%s already exists", a.devname);

	rc = tck_allocate(&minor);
	if (rc)
		return rc;
	t.minor = (int)minor;
	s = ALLOCATED;
	what = "spawn";
	pid = tdc_spawn();
	if (pid < 0)
		goto fail;
	t.pid = pid;
	s = SPAWNED;
	what = "attach";
	if (tc_request(&t, TD_CTL_ATTACH, NULL, NULL) < 0)
		goto fail;
	s = ATTACHED;
	what = "open";
	if (tc_request(&t, TD_CTL_OPEN, &req, NULL) < 0)
		goto fail;
	s = OPENED;
	/* These print their own reason: undo quietly. */
	rc = tck_tapdev_node(minor, path, sizeof(path));
	if (!rc && a.devname) {
		rc = tck_link_devname(a.devname, minor);
		if (!rc)
			s = LINKED;
	}
	if (rc) {
		undo(s, &t, a.devname, left, sizeof(left));
		return rc;
	}
	printf("%s\n", a.devname ? a.devname : path);
	if (fflush(stdout)) {
		undo(s, &t, a.devname, left, sizeof(left));
		return tc_error(TC_EXIT_FAIL, "cannot write the device's "
				"name%s", left);
	}
	return TC_EXIT_OK;
fail:
	snprintf(msg, sizeof(msg), "%s", tdc_errmsg());
	undo(s, &t, a.devname, left, sizeof(left));
	return tc_error(TC_EXIT_FAIL, "%s: %s%s", what, msg, left);
}
