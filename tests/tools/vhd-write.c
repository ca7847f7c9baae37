// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-write IMAGE SECTOR FILE: write FILE's bytes (a whole number of
 * sectors) into IMAGE's virtual disk at SECTOR, through libvhd
 * (vhd_chain_open read-write + vhd_chain_write), in large requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"

#define CHUNK	(4u << 20)

int main(int argc, char **argv)
{
	vhd_chain_t chain;
	unsigned long long sec;
	uint8_t *buf;
	char *end;
	int fd, err, status = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: vhd-write IMAGE SECTOR FILE\n");
		return 2;
	}
	errno = 0;
	sec = strtoull(argv[2], &end, 0);
	if (errno || *end || !*argv[2] || argv[2][0] == '-') {
		fprintf(stderr, "vhd-write: bad sector '%s'\n", argv[2]);
		return 2;
	}
	fd = open(argv[3], O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "vhd-write: %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	buf = malloc(CHUNK);
	if (!buf) {
		fprintf(stderr, "vhd-write: out of memory\n");
		return 1;
	}
	err = vhd_chain_open(&chain, argv[1], VHD_OPEN_RDWR);
	if (err) {
		fprintf(stderr, "vhd-write: %s\n", vhd_errmsg());
		free(buf);
		close(fd);
		return 1;
	}
	for (;;) {
		size_t got = 0;

		while (got < CHUNK) {
			ssize_t n = read(fd, buf + got, CHUNK - got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				fprintf(stderr, "vhd-write: %s: %s\n", argv[3],
					strerror(errno));
				status = 1;
				goto out;
			}
			if (!n)
				break;
			got += (size_t)n;
		}
		if (!got)
			break;
		if (got % VHD_SECTOR_SIZE) {
			fprintf(stderr, "vhd-write: %s is not a whole number of sectors\n",
				argv[3]);
			status = 1;
			goto out;
		}
		err = vhd_chain_write(&chain, buf, sec,
				      (uint32_t)(got >> VHD_SECTOR_SHIFT));
		if (err) {
			fprintf(stderr, "vhd-write: %s\n", vhd_errmsg());
			status = 1;
			goto out;
		}
		sec += got >> VHD_SECTOR_SHIFT;
		if (got < CHUNK)
			break;
	}
out:
	vhd_chain_close(&chain);
	free(buf);
	close(fd);
	return status;
}
