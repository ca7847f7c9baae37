// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl: control tapdisks.  The verbs are a table, one file each; the
 * kernel verbs (create, destroy, allocate, free, major, check) share
 * kernel.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap-ctl.h"

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *args;	/* for the list printed by -h */
};

static const struct verb verbs[] = {
	{ "list", tap_ctl_list, "[-p pid] [-m minor] [-t type] [-f file]" },
	{ "spawn", tap_ctl_spawn, "" },
	{ "attach", tap_ctl_attach, "-p pid -m minor" },
	{ "detach", tap_ctl_detach, "-p pid -m minor" },
	{ "open", tap_ctl_open,
	  "-p pid -m minor -a type:/path [-R] [-e minor] [-t secs] [-D]" },
	{ "close", tap_ctl_close, "-p pid -m minor [-f]" },
	{ "pause", tap_ctl_pause, "-p pid -m minor" },
	{ "unpause", tap_ctl_unpause, "-p pid -m minor [-a type:/path]" },
	{ "stats", tap_ctl_stats, "-p pid -m minor" },
	{ "allocate", tap_ctl_allocate, "[-d devname]" },
	{ "free", tap_ctl_free, "-m minor" },
	{ "create", tap_ctl_create,
	  "-a type:/path [-d devname] [-R] [-e minor] [-t secs] [-D]" },
	{ "destroy", tap_ctl_destroy, "-p pid -m minor" },
	{ "major", tap_ctl_major, "" },
	{ "check", tap_ctl_check, "" },
};

#define NR_VERBS	(sizeof(verbs) / sizeof(verbs[0]))

static const char *const image_types[] = { "aio", "vhd", "qcow", "ram",
					   "vmdk" };

const char *tc_verb = "";

static void help(FILE *out)
{
	fprintf(out, "usage: tap-ctl COMMAND [OPTIONS]   (each COMMAND takes -h)\n");
	for (size_t i = 0; i < NR_VERBS; i++)
		fprintf(out, "  %s%s%s\n", verbs[i].name,
			*verbs[i].args ? " " : "", verbs[i].args);
}

int tc_error(int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line, whatever the message held. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "tap-ctl: %s: %s\n", tc_verb, msg);
	return status;
}

int tc_fail(void)
{
	const char *m = tdc_errmsg();

	return tc_error(TC_EXIT_FAIL, "%s", m && *m ? m : "failed");
}

bool tc_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	/* Decimal only: "010" is ten, not eight, as a user means it. */
	if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool tc_known_type(const char *type, size_t len)
{
	for (size_t i = 0; i < sizeof(image_types) / sizeof(image_types[0]); i++)
		if (strlen(image_types[i]) == len &&
		    !strncmp(image_types[i], type, len))
			return true;
	return false;
}

bool tc_abspath(const char *path, char *out, size_t size)
{
	char cwd[PATH_MAX];
	int n;

	if (path[0] == '/') {
		n = snprintf(out, size, "%s", path);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return false;
		n = snprintf(out, size, "%s/%s", strcmp(cwd, "/") ? cwd : "",
			     path);
	}
	return n >= 0 && (size_t)n < size;
}

static int image_arg(const char *arg, char *out, size_t size)
{
	const char *colon = strchr(arg, ':');
	char path[TD_PARAMS_MAX];
	int n;

	if (!colon)
		return tc_error(TC_EXIT_USAGE,
				"'%s' is not type:/path (e.g. vhd:/images/disk.vhd)",
				arg);
	if (!tc_known_type(arg, (size_t)(colon - arg)))
		return tc_error(TC_EXIT_USAGE,
				"unknown image type '%.*s' (known: aio, vhd, qcow, ram, vmdk)",
				(int)(colon - arg), arg);
	if (!colon[1])
		return tc_error(TC_EXIT_USAGE, "missing path after '%.*s'",
				(int)(colon - arg + 1), arg);
	if (!tc_abspath(colon + 1, path, sizeof(path)))
		return tc_error(TC_EXIT_USAGE,
				"image path too long (%zu bytes; at most %zu in all)",
				strlen(colon + 1), size - 1);
	n = snprintf(out, size, "%.*s%s", (int)(colon - arg + 1), arg, path);
	if (n < 0 || (size_t)n >= size)
		return tc_error(TC_EXIT_USAGE,
				"image argument too long (at most %zu bytes)",
				size - 1);
	return 0;
}

int tc_open_params(struct td_ctl_open *o, const char *image)
{
	char params[TD_PARAMS_MAX] = "";
	int err;

	if (image) {
		err = image_arg(image, params, sizeof(params));
		if (err)
			return err;
	}
	if (tdc_set_params(o, params) < 0)
		return tc_error(TC_EXIT_USAGE, "%s", tdc_errmsg());
	return 0;
}

int tc_open_flag(struct td_ctl_open *o, const char **image, int opt,
		 const char *arg)
{
	long v;

	switch (opt) {
	case 'a':
		*image = arg;
		break;
	case 'R':
		o->flags |= TD_OPEN_RDONLY;
		break;
	case 'D':
		o->flags |= TD_OPEN_NO_O_DIRECT;
		break;
	case 'e':
		if (!tc_parse_long(arg, 0, TC_MINOR_MAX, &v))
			return tc_error(TC_EXIT_USAGE,
					"invalid -e minor '%s' (a number from 0 to %d)",
					arg, TC_MINOR_MAX);
		o->flags |= TD_OPEN_SECONDARY;
		o->secondary = (int32_t)v;
		break;
	case 't':
		if (!tc_parse_long(arg, 1, TC_TIMEOUT_MAX, &v))
			return tc_error(TC_EXIT_USAGE,
					"invalid -t timeout '%s' (seconds, from 1 to %d)",
					arg, TC_TIMEOUT_MAX);
		o->timeout_s = (uint32_t)v;
		break;
	}
	return 0;
}

/* The end of the getopt loop (option strings start with ':'). */
static int opt_error(int opt)
{
	if (opt == ':')
		return tc_error(TC_EXIT_USAGE, "option -%c needs an argument",
				optopt);
	if (optopt)
		return tc_error(TC_EXIT_USAGE, "unknown option -%c", optopt);
	return tc_error(TC_EXIT_USAGE, "unknown option");
}

static int target_opt(struct tc_target *t, int opt, const char *arg)
{
	long v;

	if (opt == 'p') {
		if (!tc_parse_long(arg, 1, INT_MAX, &v))
			return tc_error(TC_EXIT_USAGE,
					"invalid pid '%s' (a positive number)",
					arg);
		t->pid = (pid_t)v;
		return 0;
	}
	if (!tc_parse_long(arg, 0, TC_MINOR_MAX, &v))
		return tc_error(TC_EXIT_USAGE,
				"invalid minor '%s' (a number from 0 to %d)",
				arg, TC_MINOR_MAX);
	t->minor = (int)v;
	return 0;
}

int tc_parse(int argc, char **argv, const struct tc_cmdline *cl, void *ctx,
	     struct tc_target *t)
{
	bool target = cl->target != TC_TARGET_NONE;
	char optstring[32];
	int c, n, err;

	n = snprintf(optstring, sizeof(optstring), ":%s%sh",
		     target ? "p:m:" : "", cl->flags ? cl->flags : "");
	if (n < 0 || (size_t)n >= sizeof(optstring))
		return tc_error(TC_EXIT_FAIL, "internal error: too many flags");
	if (target)
		*t = (struct tc_target){ .pid = 0, .minor = -1 };
	while ((c = getopt(argc, argv, optstring)) != -1) {
		if (c == 'h') {
			fputs(cl->usage, stdout);
			return TC_EXIT_OK;
		}
		if (c == '?' || c == ':')
			return opt_error(c);
		if (target && (c == 'p' || c == 'm'))
			err = target_opt(t, c, optarg);
		else
			err = cl->flag(ctx, c, optarg);
		if (err)
			return err;
	}
	if (optind < argc)
		return tc_error(TC_EXIT_USAGE, "unexpected argument '%s'",
				argv[optind]);
	if (cl->target == TC_TARGET_REQUIRED && t->pid <= 0)
		return tc_error(TC_EXIT_USAGE, "missing -p pid");
	if (cl->target == TC_TARGET_REQUIRED && t->minor < 0)
		return tc_error(TC_EXIT_USAGE, "missing -m minor");
	return TC_CONTINUE;
}

int tc_request(const struct tc_target *t, uint16_t type,
	       struct td_ctl_msg *req, struct td_ctl_msg *rep)
{
	/* Most requests have no body and most replies say only "done". */
	static struct td_ctl_msg empty, unused;

	if (!req) {
		memset(&empty, 0, sizeof(empty));
		req = &empty;
	}
	req->type = type;
	req->minor = t->minor;
	return tdc_request(t->pid, req, rep ? rep : &unused);
}

int tc_send(const struct tc_target *t, uint16_t type, struct td_ctl_msg *req,
	    struct td_ctl_msg *rep)
{
	return tc_request(t, type, req, rep) < 0 ? tc_fail() : TC_EXIT_OK;
}

int tc_target_verb(int argc, char **argv, const struct tc_cmdline *cl,
		   uint16_t type)
{
	struct tc_target t;
	int rc = tc_parse(argc, argv, cl, NULL, &t);

	if (rc != TC_CONTINUE)
		return rc;
	return tc_send(&t, type, NULL, NULL);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		help(stderr);
		return TC_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		help(stdout);
		return TC_EXIT_OK;
	}
	for (size_t i = 0; i < NR_VERBS; i++) {
		if (strcmp(argv[1], verbs[i].name))
			continue;
		tc_verb = verbs[i].name;
		optind = 0;
		opterr = 0;	/* verbs report bad options in one line */
		return verbs[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "tap-ctl: unknown command '%s' (run 'tap-ctl -h' for the list)\n",
		argv[1]);
	return TC_EXIT_USAGE;
}
