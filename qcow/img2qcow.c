// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * img2qcow [-p] QCOW_OUT SRC_IMAGE: a sparse qcow image (blktap's
 * extended header) with the contents of a raw image or block device.
 * Clusters of zeros are left unallocated; the rest is packed behind each
 * L2 table, in order.  The source is read one L2 table's range (2 MiB)
 * at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow-image.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: img2qcow [-h] [-p] QCOW_OUT SRC_IMAGE\n"
		"Convert the raw image or device SRC_IMAGE into a sparse qcow "
		"image QCOW_OUT.\n"
		"  -p  show progress on stderr\n"
		"  -h  this help\n");
}

static int src_size(int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		qerr_set("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0) {
			qerr_set("%s: cannot get the device size: %s", path,
				 strerror(errno));
			return -errno;
		}
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		qerr_set("%s: not a regular file or block device", path);
		return -EINVAL;
	}
	if (!*size) {
		qerr_set("%s: empty image", path);
		return -EINVAL;
	}
	return 0;
}

static int convert(const char *out, const char *src, bool progress)
{
	struct qprogress prog = { .on = progress };
	struct qbuild b = { .fd = -1 };
	uint8_t *buf = NULL;
	bool *present = NULL;
	uint64_t size = 0, range;
	int fd, err;

	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		qerr_set("%s: %s", src, strerror(errno));
		return -errno;
	}
	err = src_size(fd, src, &size);
	if (!err)
		err = qbuild_create(&b, out, (size + 511) / 512 * 512, NULL,
				    QB_SPARSE);
	if (err)
		goto out;
	range = (uint64_t)b.g.l2_secs * 512;
	buf = malloc(range);
	present = calloc(b.g.l2_size, sizeof(*present));
	if (!buf || !present) {
		qerr_set("out of memory");
		err = -ENOMEM;
		goto out;
	}
	prog.total = size;
	for (uint64_t k = 0; !err && k < b.g.l1_size; k++) {
		uint64_t off = k * range, len = size - off < range ?
						size - off : range;
		bool any = false;
		ssize_t n = 0;

		memset(buf, 0, range);
		for (uint64_t done = 0; done < len; done += (uint64_t)n) {
			n = pread(fd, buf + done, len - done,
				  (off_t)(off + done));
			if (n < 0 && errno == EINTR) {
				n = 0;
				continue;
			}
			if (n <= 0) {
				err = n < 0 ? -errno : -EIO;
				qerr_set("%s: read at %" PRIu64 ": %s", src,
					 off + done, n < 0 ? strerror(errno) :
					 "unexpected end of file");
				break;
			}
		}
		for (uint32_t c = 0; !err && c < b.g.l2_size; c++) {
			present[c] = !qcow_all_zero(buf + (size_t)c *
						    b.g.cluster_size,
						    b.g.cluster_size);
			any |= present[c];
		}
		if (!err && any)
			err = qbuild_table(&b, k, buf, present, false);
		qprogress_step(&prog, off + len);
	}
	if (!err) {
		err = qbuild_finish(&b);
		if (!err)
			qprogress_done(&prog);
	}
out:
	if (err) {
		qprogress_abort(&prog);
		if (b.fd >= 0)
			qbuild_abort(&b);
	}
	free(buf);
	free(present);
	close(fd);
	return err;
}

int main(int argc, char **argv)
{
	return qconvert_main(argc, argv, "img2qcow", "QCOW_OUT SRC_IMAGE", usage,
			     convert);
}
