// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-cat [--leaf-only] IMAGE: write IMAGE's whole virtual disk to stdout,
 * read through its chain of parents, or with --leaf-only from IMAGE alone
 * (sectors it does not hold read as zeros).  Large requests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"

#define CHUNK_SECS	(8192u)		/* 4 MiB */

static int write_all(const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(STDOUT_FILENO, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	vhd_chain_t chain;
	vhd_context_t *img;
	bool leaf = false;
	uint64_t secs, sec;
	uint8_t *buf;
	int err, status = 0;

	if (argc == 3 && !strcmp(argv[1], "--leaf-only")) {
		leaf = true;
		argv++;
		argc--;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: vhd-cat [--leaf-only] IMAGE\n");
		return 2;
	}
	buf = malloc((size_t)CHUNK_SECS << VHD_SECTOR_SHIFT);
	if (!buf) {
		fprintf(stderr, "vhd-cat: out of memory\n");
		return 1;
	}
	if (leaf) {
		/* Only the leaf: a chain of one image never looks further. */
		memset(&chain, 0, sizeof(chain));
		img = calloc(1, sizeof(*img));
		err = img ? vhd_open(img, argv[1], VHD_OPEN_RDONLY) : -ENOMEM;
		if (err) {
			free(img);
		} else {
			chain.img[0] = img;
			chain.depth = 1;
		}
	} else {
		err = vhd_chain_open(&chain, argv[1], VHD_OPEN_RDONLY);
	}
	if (err) {
		fprintf(stderr, "vhd-cat: %s\n", vhd_errmsg());
		free(buf);
		return 1;
	}
	secs = vhd_sectors(chain.img[0]);
	for (sec = 0; sec < secs; sec += CHUNK_SECS) {
		uint32_t n = secs - sec < CHUNK_SECS ? (uint32_t)(secs - sec)
						     : CHUNK_SECS;

		err = vhd_chain_read(&chain, buf, sec, n);
		if (err) {
			fprintf(stderr, "vhd-cat: %s\n", vhd_errmsg());
			status = 1;
			break;
		}
		if (write_all(buf, (size_t)n << VHD_SECTOR_SHIFT)) {
			fprintf(stderr, "vhd-cat: write to stdout: %s\n",
				strerror(errno));
			status = 1;
			break;
		}
	}
	vhd_chain_close(&chain);
	free(buf);
	return status;
}
