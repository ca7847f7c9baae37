// SPDX-License-Identifier: LGPL-2.1-or-later
/* Parent resolution and reading through a chain of images. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "private.h"

#define VHD_LOC_MAX_DATA	(64u << 10)

/* Decode locator @i into @out; 0 or -errno with the message set. */
static int read_locator(const vhd_context_t *ctx, int i, char *out, size_t len)
{
	const struct vhd_locator *l = &ctx->header.loc[i];
	uint8_t *buf;
	int err;

	if (!l->data_len || l->data_len > VHD_LOC_MAX_DATA)
		return vhd_fail(ctx->file, EINVAL,
				"parent locator %d has a bad length %u", i,
				l->data_len);
	if (l->data_offset + l->data_len > ctx->footer_offset)
		return vhd_fail(ctx->file, EINVAL,
				"parent locator %d points past the end of the file",
				i);
	buf = malloc(l->data_len);
	if (!buf)
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	err = vhd_pread_full(ctx->fd, buf, l->data_len, l->data_offset);
	if (err) {
		free(buf);
		return vhd_fail(ctx->file, err, "cannot read parent locator %d: %s",
				i, strerror(-err));
	}
	err = vhd_locator_decode(l->code, buf, l->data_len, out, len);
	free(buf);
	if (err)
		return vhd_fail(ctx->file, err, "parent locator %d: %s", i,
				vhd_errmsg());
	return 0;
}

/* Relative paths resolve against the directory holding the child. */
static void resolve(const char *child, const char *path, char *out, size_t len)
{
	char tmp[PATH_MAX], *dir;

	/* Windows drive letters carry no meaning here. */
	if (((path[0] | 0x20) >= 'a' && (path[0] | 0x20) <= 'z') &&
	    path[1] == ':')
		path += 2;
	if (path[0] == '/') {
		snprintf(out, len, "%s", path);
		return;
	}
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	snprintf(tmp, sizeof(tmp), "%s", child);
	dir = dirname(tmp);
	if (!strcmp(dir, "."))
		snprintf(out, len, "%s", path);
	else
		snprintf(out, len, "%s/%s", dir, path);
}

int vhd_parent_path(const vhd_context_t *ctx, bool unresolved, char **out)
{
	/* Relative locators first, so a moved directory still resolves. */
	static const uint32_t order[3] = { VHD_LOC_W2RU, VHD_LOC_MACX,
					   VHD_LOC_W2KU };
	char text[PATH_MAX], path[PATH_MAX * 2], first[PATH_MAX * 2] = "";
	int found = 0, lasterr = 0;

	*out = NULL;
	if (ctx->footer.type != VHD_TYPE_DIFF)
		return vhd_fail(ctx->file, EINVAL, "has no parent");
	for (int o = 0; o < 3; o++) {
		for (int i = 0; i < VHD_LOC_COUNT; i++) {
			if (ctx->header.loc[i].code != order[o])
				continue;
			lasterr = read_locator(ctx, i, text, sizeof(text));
			if (lasterr)
				continue;
			found++;
			if (unresolved) {
				*out = strdup(text);
				return *out ? 0 : -ENOMEM;
			}
			resolve(ctx->file, text, path, sizeof(path));
			if (!first[0])
				snprintf(first, sizeof(first), "%s", path);
			if (access(path, F_OK) == 0) {
				char real[PATH_MAX];

				*out = strdup(realpath(path, real) ? real : path);
				return *out ? 0 : -ENOMEM;
			}
		}
	}
	if (!found && lasterr)
		return lasterr;
	if (!found)
		return vhd_fail(ctx->file, EINVAL, "has no parent locator");
	return vhd_fail(ctx->file, ENOENT, "parent not found: %s", first);
}

int vhd_chain_open(vhd_chain_t *chain, const char *leaf, int flags)
{
	struct stat seen[VHD_MAX_CHAIN];
	char *path = NULL;
	int err;

	memset(chain, 0, sizeof(*chain));
	for (;;) {
		vhd_context_t *img, *child;
		const char *name = chain->depth ? path : leaf;
		int oflags = chain->depth ? VHD_OPEN_RDONLY : flags;
		struct stat st;

		if (chain->depth == VHD_MAX_CHAIN) {
			err = vhd_fail(leaf, ELOOP, "chain deeper than %d images",
				       VHD_MAX_CHAIN);
			goto fail;
		}
		child = chain->depth ? chain->img[chain->depth - 1] : NULL;
		if (child && uuid_is_null(child->header.prt_uuid))
			oflags |= VHD_OPEN_RAW;
		if (stat(name, &st)) {
			err = vhd_fail(name, errno, "%s%s",
				       child ? "parent not found: " : "",
				       strerror(errno));
			goto fail;
		}
		for (int i = 0; i < chain->depth; i++) {
			if (seen[i].st_dev == st.st_dev &&
			    seen[i].st_ino == st.st_ino) {
				err = vhd_fail(leaf, ELOOP,
					       "parent loop: %s appears twice in the chain",
					       name);
				goto fail;
			}
		}
		img = calloc(1, sizeof(*img));
		if (!img) {
			err = vhd_fail(name, ENOMEM, "out of memory");
			goto fail;
		}
		err = vhd_open(img, name, oflags);
		if (err) {
			free(img);
			goto fail;
		}
		seen[chain->depth] = st;
		chain->img[chain->depth++] = img;
		if (child && !img->raw &&
		    uuid_compare(child->header.prt_uuid, img->footer.uuid)) {
			err = vhd_fail(child->file, EINVAL,
				       "parent %s has a different uuid than the child expects",
				       name);
			goto fail;
		}
		free(path);
		path = NULL;
		if (img->raw || img->footer.type != VHD_TYPE_DIFF)
			break;
		err = vhd_parent_path(img, false, &path);
		if (err)
			goto fail;
	}
	return 0;
fail:
	free(path);
	vhd_chain_close(chain);
	return err;
}

void vhd_chain_close(vhd_chain_t *chain)
{
	for (int i = 0; i < chain->depth; i++) {
		vhd_close(chain->img[i]);
		free(chain->img[i]);
	}
	memset(chain, 0, sizeof(*chain));
}

static int read_level(vhd_chain_t *chain, int level, uint8_t *buf,
		      uint64_t sec, uint32_t count)
{
	vhd_context_t *img = chain->img[level];
	uint64_t size = vhd_sectors(img);
	uint32_t n = count, i;
	uint8_t *present;
	int err;

	/* Beyond a (smaller) parent's end the disk reads as zeros. */
	if (sec >= size)
		n = 0;
	else if (count > size - sec)
		n = (uint32_t)(size - sec);
	memset(buf + ((size_t)n << VHD_SECTOR_SHIFT), 0,
	       (size_t)(count - n) << VHD_SECTOR_SHIFT);
	if (!n)
		return 0;
	if (img->raw || img->footer.type != VHD_TYPE_DIFF ||
	    level + 1 >= chain->depth) {
		if (img->raw) {
			err = vhd_pread_full(img->fd, buf,
					     (size_t)n << VHD_SECTOR_SHIFT,
					     sec << VHD_SECTOR_SHIFT);
			return err ? vhd_fail(img->file, err, "read failed: %s",
					      strerror(-err)) : 0;
		}
		return vhd_io_read(img, buf, sec, n, NULL);
	}
	present = calloc(1, n / 8 + 1);
	if (!present)
		return vhd_fail(img->file, ENOMEM, "out of memory");
	err = vhd_io_read(img, buf, sec, n, present);
	/* Each run of sectors this image lacks comes from below. */
	for (i = 0; !err && i < n;) {
		uint32_t j = i;

		if (vhd_bitmap_test(present, i)) {
			i++;
			continue;
		}
		while (j < n && !vhd_bitmap_test(present, j))
			j++;
		err = read_level(chain, level + 1,
				 buf + ((size_t)i << VHD_SECTOR_SHIFT), sec + i,
				 j - i);
		i = j;
	}
	free(present);
	return err;
}

int vhd_chain_read(vhd_chain_t *chain, void *buf, uint64_t sec, uint32_t count)
{
	uint64_t size;

	if (!chain->depth)
		return -EINVAL;
	size = vhd_sectors(chain->img[0]);
	if (sec > size || count > size - sec)
		return vhd_fail(chain->img[0]->file, EINVAL,
				"sectors %llu+%u lie past the end of the disk",
				(unsigned long long)sec, count);
	return read_level(chain, 0, buf, sec, count);
}

int vhd_chain_write(vhd_chain_t *chain, const void *buf, uint64_t sec,
		    uint32_t count)
{
	if (!chain->depth)
		return -EINVAL;
	if (chain->img[0]->raw)
		return vhd_fail(chain->img[0]->file, EINVAL, "raw leaf");
	return vhd_io_write(chain->img[0], buf, sec, count);
}
