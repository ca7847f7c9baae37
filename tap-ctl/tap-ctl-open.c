// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl open: open an image (and its parents) in a tapdisk. */
#include "tap-ctl.h"

struct open_args {
	struct td_ctl_open	*o;
	const char		*image;		/* -a */
};

static int open_flag(void *ctx, int opt, const char *arg)
{
	struct open_args *a = ctx;

	return tc_open_flag(a->o, &a->image, opt, arg);
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl open -p PID -m MINOR -a TYPE:/PATH [-R] [-e MINOR] [-t SECS] [-D] [-h]\n"
		 "  -R  read-only    -e  secondary of MINOR    -t  request timeout (s)\n"
		 "  -D  no O_DIRECT\n",
	.flags = "a:Re:t:D",
	.flag = open_flag,
};

int tap_ctl_open(int argc, char **argv)
{
	static struct td_ctl_msg req;
	struct open_args a = { .o = &req.body.open };
	struct tc_target t;
	int rc;

	req.body.open.secondary = -1;
	rc = tc_parse(argc, argv, &cmdline, &a, &t);
	if (rc != TC_CONTINUE)
		return rc;
	if (!a.image)
		return tc_error(TC_EXIT_USAGE, "missing -a type:/path");
	rc = tc_open_params(a.o, a.image);
	if (rc)
		return rc;
	return tc_send(&t, TD_CTL_OPEN, &req, NULL);
}
