// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow2raw [-p] RAW_OUT QCOW_SRC: the virtual disk of a qcow image (its
 * backing chain and compressed clusters included) as a raw image or onto
 * a block device.  A regular output file stays sparse where the disk
 * reads zeros; data moves QIO_BYTES at a time.
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

/* Zeros are skipped in pieces of this size. */
#define PIECE	(64u << 10)

static void usage(FILE *out)
{
	fprintf(out,
		"usage: qcow2raw [-h] [-p] RAW_OUT QCOW_SRC\n"
		"Write the disk of the qcow image QCOW_SRC (with its backing "
		"files) to RAW_OUT,\na raw file or a block device.\n"
		"  -p  show progress on stderr\n"
		"  -h  this help\n");
}

static int convert(const char *out, const char *src, bool progress)
{
	struct qprogress prog = { .on = progress };
	struct qimg *q = NULL;
	struct stat st, sst;
	uint64_t size;
	uint8_t *buf = NULL;
	bool blk;
	int fd = -1, err;

	err = qimg_open(src, &q);
	if (err)
		return err;
	size = qimg_sectors(q) * 512;
	if (stat(out, &st) == 0 && stat(src, &sst) == 0 &&
	    st.st_dev == sst.st_dev && st.st_ino == sst.st_ino) {
		qerr_set("%s: output and source are the same file", out);
		err = -EINVAL;
		goto out;
	}
	blk = stat(out, &st) == 0 && S_ISBLK(st.st_mode);
	fd = open(out, O_WRONLY | O_CLOEXEC | (blk ? 0 : O_CREAT | O_TRUNC),
		  0644);
	if (fd < 0) {
		err = -errno;
		qerr_set("%s: %s", out, strerror(errno));
		goto out;
	}
	if (blk) {
		uint64_t dev = 0;

		if (ioctl(fd, BLKGETSIZE64, &dev) < 0 || dev < size) {
			qerr_set("%s: the device is smaller than the disk (%"
				 PRIu64 " bytes)", out, size);
			err = -ENOSPC;
			goto out;
		}
	} else if (ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		qerr_set("%s: %s", out, strerror(errno));
		goto out;
	}
	buf = malloc(QIO_BYTES);
	if (!buf) {
		qerr_set("out of memory");
		err = -ENOMEM;
		goto out;
	}
	prog.total = size;
	for (uint64_t off = 0; off < size; off += QIO_BYTES) {
		size_t len = size - off < QIO_BYTES ? size - off : QIO_BYTES;

		err = qimg_read(q, off / 512, (uint32_t)(len / 512), buf);
		if (err)
			goto out;
		/*
		 * A new regular file already reads zeros: leave holes
		 * where whole pieces are zeros; write the rest in runs.
		 */
		for (size_t at = 0, end; at < len; at = end) {
			bool zero = !blk && qcow_all_zero(buf + at, PIECE <
							  len - at ? PIECE :
							  len - at);

			for (end = at; end < len; end += PIECE) {
				size_t n = len - end < PIECE ? len - end :
					   PIECE;

				if (!blk && qcow_all_zero(buf + end, n) != zero)
					break;
			}
			if (end > len)
				end = len;
			if (zero)
				continue;
			err = qcow_pwrite(fd, buf + at, end - at, off + at);
			if (err) {
				qerr_set("%s: write at %" PRIu64 ": %s", out,
					 off + at, strerror(-err));
				goto out;
			}
		}
		qprogress_step(&prog, off + len);
	}
	if (fsync(fd) < 0) {
		err = -errno;
		qerr_set("%s: %s", out, strerror(errno));
		goto out;
	}
	qprogress_done(&prog);
out:
	if (err)
		qprogress_abort(&prog);
	if (fd >= 0)
		close(fd);
	free(buf);
	qimg_close(q);
	return err;
}

int main(int argc, char **argv)
{
	return qconvert_main(argc, argv, "qcow2raw", "RAW_OUT QCOW_SRC", usage,
			     convert);
}
