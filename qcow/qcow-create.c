// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow-create [-r] [-p] SIZE_MB FILE [BACKING]: a new qcow (version 1)
 * image with blktap's extended header.
 *   -r  optimised allocation: tapdisk allocates each L2 table together
 *       with all of its clusters, contiguous (min_cluster_alloc = L2 size)
 *   -p  preallocate: every L2 table and cluster now, the file at full size
 * With BACKING (qcow or raw) the image starts as a copy-on-write overlay
 * of it, with 512-byte clusters; -r and -p would hide the backing data.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow-image.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: qcow-create [-h] [-r] [-p] SIZE_MB FILE [BACKING]\n"
		"Create a qcow image of SIZE_MB MiB named FILE, optionally "
		"over BACKING (qcow or raw).\n"
		"  -r  optimised allocation: an L2 table is allocated with "
		"all of its clusters\n"
		"  -p  preallocate every L2 table and cluster\n"
		"  -h  this help\n");
}

int main(int argc, char **argv)
{
	bool optimised = false, prealloc = false;
	struct qbuild b;
	unsigned long long mb;
	char *end;
	int c, err;

	opterr = 0;
	while ((c = getopt(argc, argv, "hrp")) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'r':
			optimised = true;
			break;
		case 'p':
			prealloc = true;
			break;
		default:
			fprintf(stderr, "qcow-create: unknown option -%c "
				"(-h for help)\n", optopt);
			return EINVAL;
		}
	}
	if (argc - optind < 2 || argc - optind > 3) {
		fprintf(stderr, "qcow-create: expected SIZE_MB FILE [BACKING] "
			"(-h for help)\n");
		return EINVAL;
	}
	errno = 0;
	mb = strtoull(argv[optind], &end, 10);
	if (errno || *end || !mb || argv[optind][0] == '-' ||
	    mb > (1ull << 62) >> 20) {
		fprintf(stderr, "qcow-create: '%s' is not a size in MiB\n",
			argv[optind]);
		return EINVAL;
	}
	if (argc - optind == 3 && (optimised || prealloc)) {
		fprintf(stderr, "qcow-create: -%c cannot be used with a "
			"backing file: allocated clusters would hide its "
			"data\n",
			optimised ? 'r' : 'p');
		return EINVAL;
	}
	err = qbuild_create(&b, argv[optind + 1], mb << 20,
			    argc - optind == 3 ? argv[optind + 2] : NULL,
			    (optimised ? QB_OPTIMISED : 0) |
			    (prealloc ? 0 : QB_SPARSE));
	for (uint64_t k = 0; !err && prealloc && k < b.g.l1_size; k++)
		err = qbuild_table(&b, k, NULL, NULL, true);
	if (!err)
		err = qbuild_finish(&b);
	else if (b.fd >= 0)
		qbuild_abort(&b);
	if (err) {
		fprintf(stderr, "qcow-create: %s\n", qerr());
		return -err;
	}
	return 0;
}
