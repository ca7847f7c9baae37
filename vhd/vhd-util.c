// SPDX-License-Identifier: LGPL-2.1-or-later
/* vhd-util: the command line of libvhd; one file per verb. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct verb verbs[] = {
	{ "create", vhd_util_create },
	{ "snapshot", vhd_util_snapshot },
	{ "query", vhd_util_query },
	{ "read", vhd_util_read },
	{ "set", vhd_util_set },
	{ "repair", vhd_util_repair },
	{ "resize", vhd_util_resize },
	{ "fill", vhd_util_fill },
	{ "coalesce", vhd_util_coalesce },
	{ "modify", vhd_util_modify },
	{ "scan", vhd_util_scan },
	{ "check", vhd_util_check },
	{ "revert", vhd_util_revert },
};

static void help(FILE *out)
{
	size_t i;

	fprintf(out, "usage: vhd-util COMMAND [OPTIONS]\nCOMMAND := { ");
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(out, "%s%s", i ? " | " : "", verbs[i].name);
	fprintf(out, " }\n");
}

int main(int argc, char **argv)
{
	int i, j;

	if (argc < 2) {
		help(stderr);
		return EINVAL;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		help(stdout);
		return 0;
	}
	/* --debug is accepted anywhere, as the established tool does. */
	for (i = j = 2; i < argc; i++)
		if (strcmp(argv[i], "--debug"))
			argv[j++] = argv[i];
	argc = j;
	argv[argc] = NULL;

	for (i = 0; i < (int)(sizeof(verbs) / sizeof(verbs[0])); i++) {
		if (strcmp(argv[1], verbs[i].name))
			continue;
		vhd_util_verb = verbs[i].name;
		optind = 0;
		opterr = 0;	/* verbs report bad options in one line */
		return verbs[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "vhd-util: invalid COMMAND '%s' (run 'vhd-util -h' for the list)\n",
		argv[1]);
	return EINVAL;
}
