// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl list: one line per tapdisk,
 *   pid=<pid> minor=<minor> state=0x<hex> args=<type>:<path>
 * ("-" for no minor or no image), or an aligned table on a terminal.
 * The options filter; a filter that matches nothing prints nothing.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl list [-p PID] [-m MINOR] [-t TYPE] [-f FILE] [-h]\n");
}

struct filter {
	pid_t pid;		/* 0: any */
	int minor;		/* -1: any */
	const char *type;	/* NULL: any */
	char file[TD_PARAMS_MAX]; /* "": any */
};

static bool matches(const struct filter *f, const struct td_ctl_info *in)
{
	const char *colon = strchr(in->params, ':');

	if (f->pid && in->pid != f->pid)
		return false;
	if (f->minor >= 0 && in->minor != f->minor)
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

int tap_ctl_list(int argc, char **argv)
{
	static struct filter f = { .minor = -1 };
	struct td_ctl_info *list;
	long v;
	int c, n, kept = 0;

	while ((c = getopt(argc, argv, ":p:m:t:f:h")) != -1) {
		switch (c) {
		case 'p':
			if (!tc_parse_long(optarg, 1, INT_MAX, &v))
				return tc_error(TC_EXIT_USAGE,
						"invalid pid '%s' (a positive number)",
						optarg);
			f.pid = (pid_t)v;
			break;
		case 'm':
			if (!tc_parse_long(optarg, 0, TC_MINOR_MAX, &v))
				return tc_error(TC_EXIT_USAGE,
						"invalid minor '%s' (a number from 0 to %d)",
						optarg, TC_MINOR_MAX);
			f.minor = (int)v;
			break;
		case 't':
			if (!tc_known_type(optarg, strlen(optarg)))
				return tc_error(TC_EXIT_USAGE,
						"unknown image type '%s' (known: aio, vhd, qcow, ram, vmdk)",
						optarg);
			f.type = optarg;
			break;
		case 'f':
			/* Images are listed by absolute path: compare alike. */
			if (!*optarg || !tc_abspath(optarg, f.file, sizeof(f.file)))
				return tc_error(TC_EXIT_USAGE,
						"invalid file '%s'", optarg);
			break;
		case 'h':
			usage();
			return TC_EXIT_OK;
		default:
			return tc_opt_error(c);
		}
	}
	if (!tc_no_args(argc, argv))
		return TC_EXIT_USAGE;
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
