// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl close: drain (or with -f fail) in-flight I/O and close the images. */
#include "tap-ctl.h"

/* -f, the only flag of its own. */
static int close_flag(void *ctx, int opt, const char *arg)
{
	struct td_ctl_msg *req = ctx;

	(void)opt;
	(void)arg;
	req->flags |= TD_CLOSE_FORCE;
	return 0;
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl close -p PID -m MINOR [-f] [-h]\n"
		 "  -f  fail in-flight I/O instead of waiting for it\n",
	.flags = "f",
	.flag = close_flag,
};

int tap_ctl_close(int argc, char **argv)
{
	static struct td_ctl_msg req;
	struct tc_target t;
	int rc = tc_parse(argc, argv, &cmdline, &req, &t);

	if (rc != TC_CONTINUE)
		return rc;
	return tc_send(&t, TD_CTL_CLOSE, &req, NULL);
}
