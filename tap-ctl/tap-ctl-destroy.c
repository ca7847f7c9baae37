// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl destroy: undo create, as close + detach + free, and let the
 * tapdisk (idle then) exit.  Refused, with nothing changed, while the
 * block device is in use.  A tapdisk that is gone already (it crashed)
 * is skipped: its minor is still freed.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "kernel.h"
#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl destroy -p PID -m MINOR [-h]\n"
		 "  refused while the block device is in use (mounted, say)\n",
};

/* Close, detach and stop the tapdisk @t names; an exit status. */
static int stop_tapdisk(const struct tc_target *t)
{
	static struct td_ctl_msg rep;
	const struct td_ctl_info *in = &rep.body.info;
	int err = tc_request(t, TD_CTL_INFO, NULL, &rep);

	if (err == -ESRCH)
		return TC_EXIT_OK;	/* gone: the kernel holds the rest */
	if (err < 0)
		return tc_fail();
	if (in->minor >= 0 && in->minor != t->minor)
		return tc_error(TC_EXIT_FAIL, "tapdisk %d serves minor %d, "
				"not %d", (int)t->pid, (int)in->minor,
				t->minor);
	if (in->state & (TD_STATE_OPEN | TD_STATE_PAUSED |
			 TD_STATE_PAUSE_REQ) &&
	    tc_request(t, TD_CTL_CLOSE, NULL, NULL) < 0)
		return tc_fail();
	if (in->state & TD_STATE_ATTACHED &&
	    tc_request(t, TD_CTL_DETACH, NULL, NULL) < 0)
		return tc_fail();
	/* Idle now, it exits at once. */
	if (kill(t->pid, SIGTERM) < 0 && errno != ESRCH)
		return tc_error(TC_EXIT_FAIL, "cannot stop tapdisk %d: %s",
				(int)t->pid, strerror(errno));
	tck_wait_gone(t->pid);
	return TC_EXIT_OK;
}

int tap_ctl_destroy(int argc, char **argv)
{
	struct tc_target t;
	int rc = tc_parse(argc, argv, &cmdline, NULL, &t);

	if (rc != TC_CONTINUE)
		return rc;
	/* Before asking the tapdisk anything: it is the common failure. */
	rc = tck_need_module();
	if (rc)
		return rc;
	rc = stop_tapdisk(&t);
	if (rc)
		return rc;
	return tck_free((unsigned int)t.minor);
}
