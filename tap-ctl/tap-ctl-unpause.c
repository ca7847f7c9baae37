// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl unpause: reopen the images (or, with -a, a new leaf) and resume. */
#include "tap-ctl.h"

/* -a: the image to resume on. */
static int unpause_flag(void *ctx, int opt, const char *arg)
{
	(void)opt;
	*(const char **)ctx = arg;
	return 0;
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl unpause -p PID -m MINOR [-a TYPE:/PATH] [-h]\n"
		 "  -a  resume on this image (same size) instead of the old one\n",
	.flags = "a:",
	.flag = unpause_flag,
};

int tap_ctl_unpause(int argc, char **argv)
{
	static struct td_ctl_msg req;
	const char *image = NULL;
	struct tc_target t;
	int rc = tc_parse(argc, argv, &cmdline, &image, &t);

	if (rc != TC_CONTINUE)
		return rc;
	rc = tc_open_params(&req.body.open, image);
	if (rc)
		return rc;
	return tc_send(&t, TD_CTL_UNPAUSE, &req, NULL);
}
