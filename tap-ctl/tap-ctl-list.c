// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl list: one line per tapdisk,
 *   pid=<pid> minor=<minor> state=0x<hex> args=<type>:<path>
 * ("-" for no minor or no image), or an aligned table on a terminal.
 * The options filter; a filter that matches nothing prints nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap-ctl.h"

struct filter {
	struct tc_target t;	/* pid 0, minor -1: any */
	const char *type;	/* NULL: any */
	char file[TD_PARAMS_MAX]; /* "": any */
};

static bool matches(const struct filter *f, const struct td_ctl_info *in)
{
	const char *colon = strchr(in->params, ':');

	if (f->t.pid && in->pid != f->t.pid)
		return false;
	if (f->t.minor >= 0 && in->minor != f->t.minor)
		return false;
	if (f->type && (!colon || strlen(f->type) != (size_t)(colon - in->params) ||
			strncmp(in->params, f->type, strlen(f->type))))
		return false;
	if (f->file[0] && (!colon || strcmp(colon + 1, f->file)))
		return false;
	return true;
}

static void print_table(const struct td_ctl_info *list, int n)
{
	printf("%8s %6s %6s  %s\n", "PID", "MINOR", "STATE", "ARGS");
	for (int i = 0; i < n; i++) {
		char minor[16], state[16];

		snprintf(minor, sizeof(minor), "%d", (int)list[i].minor);
		/* "%#x" would print a zero state without its 0x. */
		snprintf(state, sizeof(state), "0x%x", list[i].state);
		printf("%8d %6s %6s  %s\n", (int)list[i].pid,
		       list[i].minor >= 0 ? minor : "-", state,
		       list[i].params[0] ? list[i].params : "-");
	}
}

static void print_lines(const struct td_ctl_info *list, int n)
{
	for (int i = 0; i < n; i++) {
		printf("pid=%d minor=", (int)list[i].pid);
		if (list[i].minor >= 0)
			printf("%d", (int)list[i].minor);
		else
			printf("-");
		printf(" state=0x%x args=%s\n", list[i].state,
		       list[i].params[0] ? list[i].params : "-");
	}
}

/* -t and -f; -p and -m are tc_parse()'s. */
static int list_flag(void *ctx, int opt, const char *arg)
{
	struct filter *f = ctx;

	if (opt == 't') {
		if (!tc_known_type(arg, strlen(arg)))
			return tc_error(TC_EXIT_USAGE,
					"unknown image type '%s' (known: aio, vhd, qcow, ram, vmdk)",
					arg);
		f->type = arg;
		return 0;
	}
	/* Images are listed by absolute path: compare alike. */
	if (!*arg || !tc_abspath(arg, f->file, sizeof(f->file)))
		return tc_error(TC_EXIT_USAGE, "invalid file '%s'", arg);
	return 0;
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl list [-p PID] [-m MINOR] [-t TYPE] [-f FILE] [-h]\n",
	.flags = "t:f:",
	.flag = list_flag,
	.target = TC_TARGET_OPTIONAL,
};

int tap_ctl_list(int argc, char **argv)
{
	static struct filter f;
	struct td_ctl_info *list;
	int n, kept = 0;
	int rc = tc_parse(argc, argv, &cmdline, &f, &f.t);

	if (rc != TC_CONTINUE)
		return rc;
	n = tdc_list(&list);
	if (n < 0)
		return tc_fail();
	for (int i = 0; i < n; i++)
		if (matches(&f, &list[i]))
			list[kept++] = list[i];
	if (isatty(STDOUT_FILENO))
		print_table(list, kept);
	else
		print_lines(list, kept);
	free(list);
	return fflush(stdout) ? tc_error(TC_EXIT_FAIL, "cannot write the list") :
				TC_EXIT_OK;
}
