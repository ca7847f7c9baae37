// SPDX-License-Identifier: LGPL-2.1-or-later
/* vhd-util set: change the footer's hidden byte or the batmap's marker. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util set -n NAME -f hidden|marker -v VALUE(0-255) [-h]\n");
}

int vhd_util_set(int argc, char **argv)
{
	const char *name = NULL, *field = NULL, *value_arg = NULL;
	vhd_context_t ctx;
	uint64_t value;
	int c, err;

	while ((c = getopt(argc, argv, ":n:f:v:h")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'f':
			field = optarg;
			break;
		case 'v':
			value_arg = optarg;
			break;
		case 'h':
			usage();
			return 0;
		default:
			return vu_opt_error(c);
		}
	}
	if (!vu_args_done(argc, argv, name))
		return EINVAL;
	if (!field)
		return vu_usage("missing -f field (hidden or marker)");
	if (!value_arg)
		return vu_usage("missing -v value");
	if (strcmp(field, "hidden") && strcmp(field, "marker"))
		return vu_usage("invalid field '%s' (hidden or marker)", field);
	if (!vu_parse_u64(value_arg, &value) || value > 255)
		return vu_usage("invalid value '%s' (0 to 255)", value_arg);

	err = vhd_open(&ctx, name, VHD_OPEN_RDWR);
	if (err)
		return vu_fail(err);
	if (!strcmp(field, "hidden"))
		err = vhd_set_hidden(&ctx, (uint8_t)value);
	else
		err = vhd_set_marker(&ctx, (uint8_t)value);
	if (!err)
		err = vhd_flush(&ctx);
	vhd_close(&ctx);
	return err ? vu_fail(err) : 0;
}
