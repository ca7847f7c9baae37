// SPDX-License-Identifier: LGPL-2.1-or-later
/* Creating fixed, dynamic and differencing images; parent locators. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "private.h"

/* Room for each locator, so that 'modify -p' can point elsewhere later. */
#define VHD_LOC_MIN_SPACE	2048u

struct parent_info {
	char		abs[PATH_MAX];	/* realpath of the parent */
	char		rel[PATH_MAX];	/* relative to the child's directory */
	uuid_t		uuid;		/* zero for a raw parent */
	uint32_t	ts;
	uint64_t	size;
};

/* UTF-8 to UTF-16 (LE or BE); returns bytes written or -1. */
static ssize_t utf8_to_utf16(const char *in, uint8_t *out, size_t room, bool be,
			     bool backslash)
{
	const uint8_t *p = (const uint8_t *)in;
	size_t o = 0;

	while (*p) {
		uint32_t cp;
		int extra;

		if (*p < 0x80) {
			cp = *p;
			extra = 0;
		} else if ((*p & 0xE0) == 0xC0) {
			cp = *p & 0x1F;
			extra = 1;
		} else if ((*p & 0xF0) == 0xE0) {
			cp = *p & 0x0F;
			extra = 2;
		} else if ((*p & 0xF8) == 0xF0) {
			cp = *p & 0x07;
			extra = 3;
		} else {
			return -1;
		}
		p++;
		while (extra--) {
			if ((*p & 0xC0) != 0x80)
				return -1;
			cp = cp << 6 | (*p++ & 0x3F);
		}
		if (backslash && cp == '/')
			cp = '\\';
		if (cp >= 0x10000) {
			uint32_t v = cp - 0x10000;
			uint16_t units[2] = { (uint16_t)(0xD800 | v >> 10),
					      (uint16_t)(0xDC00 | (v & 0x3FF)) };

			for (int i = 0; i < 2; i++) {
				if (o + 2 > room)
					return -1;
				out[o + (be ? 0 : 1)] = (uint8_t)(units[i] >> 8);
				out[o + (be ? 1 : 0)] = (uint8_t)units[i];
				o += 2;
			}
			continue;
		}
		if (o + 2 > room)
			return -1;
		out[o + (be ? 0 : 1)] = (uint8_t)(cp >> 8);
		out[o + (be ? 1 : 0)] = (uint8_t)cp;
		o += 2;
	}
	return (ssize_t)o;
}

/*
 * Relative path from directory @from to file @to, both absolute and
 * canonical (realpath): "../" for each component of @from below the common
 * ancestor, then the rest of @to.  "./" alone when there is no "../".
 */
static int relative_path(const char *from, const char *to, char *out, size_t len)
{
	size_t flen = strlen(from), common = 0, i;
	int ups = 0;
	const char *rest;

	/* @from is an ancestor directory of @to: the common part is all of it. */
	if (!strcmp(from, "/")) {
		common = 1;
	} else if (!strncmp(from, to, flen) && to[flen] == '/') {
		common = flen + 1;
	} else {
		for (i = 0; from[i] && from[i] == to[i]; i++)
			if (from[i] == '/')
				common = i + 1;
	}
	/* Components of @from past the common prefix. */
	if (common < flen) {
		ups = 1;
		for (i = common; i < flen; i++)
			if (from[i] == '/')
				ups++;
	}
	rest = to + common;
	if (snprintf(out, len, "%s", ups ? "" : "./") >= (int)len)
		return -ENAMETOOLONG;
	while (ups--) {
		if (strlen(out) + 3 >= len)
			return -ENAMETOOLONG;
		strcat(out, "../");
	}
	if (strlen(out) + strlen(rest) >= len)
		return -ENAMETOOLONG;
	strcat(out, rest);
	return 0;
}

static int parent_paths(const char *child, const char *parent,
			struct parent_info *pi)
{
	char dir[PATH_MAX], tmp[PATH_MAX];

	if (!realpath(parent, pi->abs))
		return vhd_fail(parent, errno, "cannot resolve parent: %s",
				strerror(errno));
	if (snprintf(tmp, sizeof(tmp), "%s", child) >= (int)sizeof(tmp))
		return vhd_fail(child, ENAMETOOLONG, "path too long");
	if (!realpath(dirname(tmp), dir))
		return vhd_fail(child, errno, "cannot resolve directory: %s",
				strerror(errno));
	if (relative_path(dir, pi->abs, pi->rel, sizeof(pi->rel)))
		return vhd_fail(child, ENAMETOOLONG, "parent path too long");
	return 0;
}

/* Encode one locator payload; returns its length or -1. */
static ssize_t encode_locator(uint32_t code, const struct parent_info *pi,
			      uint8_t *out, size_t room)
{
	const char *rel = pi->rel;

	switch (code) {
	case VHD_LOC_MACX: {
		int n = snprintf((char *)out, room, "file://%s", rel);

		return n < 0 || (size_t)n >= room ? -1 : n;
	}
	case VHD_LOC_W2KU:
		return utf8_to_utf16(pi->abs, out, room, false, true);
	case VHD_LOC_W2RU:
		/* relative_path() always starts with "./" or "../". */
		return utf8_to_utf16(rel, out, room, false, true);
	}
	return -1;
}

static const uint32_t loc_codes[3] = { VHD_LOC_MACX, VHD_LOC_W2KU, VHD_LOC_W2RU };

/* Bytes the three locators of @pi need, each rounded up to its slot. */
static uint64_t locators_size(const struct parent_info *pi, uint64_t *each)
{
	uint8_t buf[PATH_MAX * 4];
	uint64_t total = 0;

	for (int i = 0; i < 3; i++) {
		ssize_t n = encode_locator(loc_codes[i], pi, buf, sizeof(buf));
		uint64_t space = round_up(n > 0 ? (uint64_t)n : 1, 512);

		if (space < VHD_LOC_MIN_SPACE)
			space = VHD_LOC_MIN_SPACE;
		each[i] = space;
		total += space;
	}
	return total;
}

static void set_parent_name(struct vhd_header *h, const struct parent_info *pi)
{
	uint8_t buf[512];
	char tmp[PATH_MAX];
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s", pi->abs);
	memset(h->prt_name, 0, sizeof(h->prt_name));
	n = utf8_to_utf16(basename(tmp), buf, sizeof(buf) - 2, true, false);
	for (ssize_t i = 0; i + 1 < n; i += 2)
		h->prt_name[i / 2] = (uint16_t)(buf[i] << 8 | buf[i + 1]);
}

/* Write the locator payloads at the offsets already in ctx->header. */
static int write_locator_data(vhd_context_t *ctx, const struct parent_info *pi)
{
	struct vhd_header *h = &ctx->header;

	for (int i = 0; i < VHD_LOC_COUNT; i++) {
		struct vhd_locator *l = &h->loc[i];
		uint64_t space = vhd_locator_space(l);
		uint8_t *buf;
		ssize_t n;
		int err;

		if (l->code != VHD_LOC_MACX && l->code != VHD_LOC_W2KU &&
		    l->code != VHD_LOC_W2RU)
			continue;
		buf = calloc(1, space ? space : 1);
		if (!buf)
			return vhd_fail(ctx->file, ENOMEM, "out of memory");
		n = encode_locator(l->code, pi, buf, space);
		if (n <= 0) {
			free(buf);
			return vhd_fail(ctx->file, ENAMETOOLONG,
					"parent path %s does not fit locator %d",
					pi->abs, i);
		}
		l->data_len = (uint32_t)n;
		err = vhd_pwrite_full(ctx->fd, buf, space, l->data_offset);
		free(buf);
		if (err)
			return vhd_fail(ctx->file, err, "cannot write locator: %s",
					strerror(-err));
	}
	return 0;
}

static void init_footer(struct vhd_footer *f, uint64_t bytes, uint32_t type)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, "conectix", 8);
	f->features = VHD_FEATURES_RESERVED;
	f->ff_version = VHD_FF_VERSION;
	f->data_offset = type == VHD_TYPE_FIXED ? ~0ull : VHD_FOOTER_SIZE;
	f->timestamp = vhd_time_now();
	memcpy(f->crtr_app, "tap", 4);
	f->crtr_ver = VHD_CREATOR_VERSION;
	f->crtr_os = VHD_CREATOR_OS;
	f->orig_size = bytes;
	f->curr_size = bytes;
	f->geometry = vhd_chs(bytes >> VHD_SECTOR_SHIFT);
	f->type = type;
	uuid_generate(f->uuid);
}

static int check_size(const char *path, uint64_t bytes, uint64_t reserve)
{
	if (!bytes)
		return vhd_fail(path, EINVAL, "size must be greater than zero");
	if (bytes > VHD_MAX_BYTES || reserve > VHD_MAX_BYTES)
		return vhd_fail(path, EINVAL,
				"size %llu MiB exceeds the VHD limit of 2040 GiB (2088960 MiB)",
				(unsigned long long)((bytes > reserve ? bytes : reserve) >> 20));
	if (reserve && reserve < bytes)
		return vhd_fail(path, EINVAL,
				"metadata reserve (%llu MiB) is smaller than the size (%llu MiB)",
				(unsigned long long)(reserve >> 20),
				(unsigned long long)(bytes >> 20));
	return 0;
}

static int create_fixed(vhd_context_t *ctx, uint64_t bytes)
{
	int err;

	init_footer(&ctx->footer, bytes, VHD_TYPE_FIXED);
	/* Preallocate where the file system can; sparse otherwise. */
	if (fallocate(ctx->fd, 0, 0, (off_t)bytes) &&
	    errno != EOPNOTSUPP && errno != ENOSYS)
		return vhd_fail(ctx->file, errno, "cannot allocate %llu bytes: %s",
				(unsigned long long)bytes, strerror(errno));
	ctx->footer_offset = bytes;
	err = vhd_write_footer(ctx, &ctx->footer);
	return err;
}

static int create_dynamic(vhd_context_t *ctx, uint64_t bytes, uint64_t reserve,
			  const struct parent_info *pi)
{
	struct vhd_header *h = &ctx->header;
	struct vhd_batmap_header *b = &ctx->batmap_hdr;
	uint64_t bat_bytes, map_bytes, off, each[3];
	uint32_t entries;
	int err;

	init_footer(&ctx->footer, bytes, pi ? VHD_TYPE_DIFF : VHD_TYPE_DYNAMIC);
	entries = (uint32_t)((((reserve > bytes) ? reserve : bytes) +
			      VHD_BLOCK_SIZE - 1) / VHD_BLOCK_SIZE);
	memset(h, 0, sizeof(*h));
	memcpy(h->cookie, "cxsparse", 8);
	h->data_offset = ~0ull;
	h->table_offset = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
	h->hdr_ver = VHD_HDR_VERSION;
	h->max_bat_size = entries;
	h->block_size = VHD_BLOCK_SIZE;
	ctx->spb = VHD_BLOCK_SIZE >> VHD_SECTOR_SHIFT;
	ctx->bm_secs = (uint32_t)secs_round_up(ctx->spb / 8);

	bat_bytes = vhd_bat_bytes(entries);
	map_bytes = vhd_batmap_bytes(entries);
	memset(b, 0, sizeof(*b));
	memcpy(b->cookie, "tdbatmap", 8);
	b->batmap_offset = h->table_offset + bat_bytes + VHD_SECTOR_SIZE;
	b->batmap_size = (uint32_t)(map_bytes >> VHD_SECTOR_SHIFT);
	b->batmap_version = VHD_BATMAP_VERSION;
	off = b->batmap_offset + map_bytes;

	ctx->bat = malloc(bat_bytes);
	ctx->batmap = calloc(1, map_bytes);
	if (!ctx->bat || !ctx->batmap)
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	memset(ctx->bat, 0xFF, bat_bytes);
	ctx->has_batmap = true;

	if (pi) {
		locators_size(pi, each);
		memcpy(h->prt_uuid, pi->uuid, sizeof(uuid_t));
		h->prt_ts = pi->ts;
		set_parent_name(h, pi);
		for (int i = 0; i < 3; i++) {
			h->loc[i].code = loc_codes[i];
			h->loc[i].data_space = (uint32_t)each[i];	/* bytes */
			h->loc[i].data_offset = off;
			off += each[i];
		}
	}
	ctx->footer_offset = off;
	ctx->next_block = off;

	/* Metadata first, the footer at the end last: a partial file is no VHD. */
	err = vhd_write_bat(ctx);
	if (err)
		return err;
	err = vhd_write_batmap(ctx);
	if (err)
		return err;
	if (pi) {
		err = write_locator_data(ctx, pi);
		if (err)
			return err;
	}
	err = vhd_write_header(ctx, h);
	if (err)
		return err;
	return vhd_write_footer(ctx, &ctx->footer);
}

static int create_common(const char *path, uint64_t bytes, uint64_t reserve,
			 int flags, const struct parent_info *pi)
{
	vhd_context_t ctx;
	int err;

	memset(&ctx, 0, sizeof(ctx));
	ctx.oflags = VHD_OPEN_RDWR;
	ctx.file = strdup(path);
	if (!ctx.file)
		return vhd_fail(path, ENOMEM, "out of memory");
	ctx.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (ctx.fd < 0) {
		err = vhd_fail(path, errno, "cannot create: %s", strerror(errno));
		free(ctx.file);
		return err;
	}
	if (flags & VHD_CREATE_FIXED)
		err = create_fixed(&ctx, bytes);
	else
		err = create_dynamic(&ctx, bytes, reserve, pi);
	if (!err && fsync(ctx.fd))
		err = vhd_fail(path, errno, "fsync: %s", strerror(errno));
	vhd_close(&ctx);
	if (err)
		unlink(path);
	return err;
}

int vhd_create(const char *path, uint64_t bytes, uint64_t reserve_bytes,
	       int flags)
{
	int err = check_size(path, bytes, reserve_bytes);

	if (err)
		return err;
	if (flags & VHD_CREATE_FIXED) {
		bytes = round_up(bytes, VHD_SECTOR_SIZE);
	} else {
		/* blktap rounds dynamic disks up to whole 2 MiB blocks. */
		bytes = round_up(bytes, VHD_BLOCK_SIZE);
		if (reserve_bytes)
			reserve_bytes = round_up(reserve_bytes, VHD_BLOCK_SIZE);
		err = check_size(path, bytes, reserve_bytes);
		if (err)
			return err;
	}
	return create_common(path, bytes, reserve_bytes, flags, NULL);
}

static int parent_info_load(const char *child, const char *parent, int flags,
			    struct parent_info *pi)
{
	struct stat st;
	vhd_context_t p;
	int err;

	memset(pi, 0, sizeof(*pi));
	err = parent_paths(child, parent, pi);
	if (err)
		return err;
	if (stat(pi->abs, &st))
		return vhd_fail(parent, errno, "cannot stat parent: %s",
				strerror(errno));
	pi->ts = st.st_mtime > 946684800 ? (uint32_t)(st.st_mtime - 946684800) : 0;
	if (flags & VHD_CREATE_PARENT_RAW) {
		err = vhd_open(&p, pi->abs, VHD_OPEN_RDONLY | VHD_OPEN_RAW);
		if (err)
			return err;
		pi->size = vhd_sectors(&p) << VHD_SECTOR_SHIFT;
		vhd_close(&p);
		if (!pi->size)
			return vhd_fail(parent, EINVAL, "raw parent is empty");
		return 0;
	}
	err = vhd_open(&p, pi->abs, VHD_OPEN_RDONLY);
	if (err)
		return err;
	memcpy(pi->uuid, p.footer.uuid, sizeof(uuid_t));
	pi->size = p.footer.curr_size;
	vhd_close(&p);
	return 0;
}

int vhd_snapshot(const char *child, uint64_t bytes, const char *parent,
		 uint64_t reserve_bytes, int flags)
{
	struct parent_info pi;
	int err;

	err = parent_info_load(child, parent, flags, &pi);
	if (err)
		return err;
	if (!bytes)
		bytes = pi.size;	/* the parent's exact size */
	else
		bytes = round_up(bytes, VHD_BLOCK_SIZE);
	if (bytes < pi.size)
		return vhd_fail(child, EINVAL,
				"size %llu MiB is smaller than the parent's %llu MiB",
				(unsigned long long)(bytes >> 20),
				(unsigned long long)(pi.size >> 20));
	if (reserve_bytes)
		reserve_bytes = round_up(reserve_bytes, VHD_BLOCK_SIZE);
	err = check_size(child, bytes, reserve_bytes);
	if (err)
		return err;
	return create_common(child, bytes, reserve_bytes,
			     flags & ~VHD_CREATE_FIXED, &pi);
}

int vhd_set_parent(vhd_context_t *ctx, const char *parent, bool parent_raw)
{
	struct parent_info pi;
	struct vhd_header h;
	int err;

	if (ctx->footer.type != VHD_TYPE_DIFF)
		return vhd_fail(ctx->file, EINVAL, "not a differencing image");
	err = parent_info_load(ctx->file, parent,
			       parent_raw ? VHD_CREATE_PARENT_RAW : 0, &pi);
	if (err)
		return err;
	h = ctx->header;
	memcpy(h.prt_uuid, pi.uuid, sizeof(uuid_t));
	h.prt_ts = pi.ts;
	set_parent_name(&h, &pi);
	ctx->header = h;
	/* The payloads first; the header that describes them after. */
	err = write_locator_data(ctx, &pi);
	if (err)
		return err;
	err = vhd_write_header(ctx, &ctx->header);
	if (!err && fsync(ctx->fd))
		err = vhd_fail(ctx->file, errno, "fsync: %s", strerror(errno));
	return err;
}
