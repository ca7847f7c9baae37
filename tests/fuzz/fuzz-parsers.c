// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target for the pure on-disk codecs.  The input is laid out
 * like the start of a dynamic image:
 *
 *   [0, 512)      a footer            -> vhd_footer_decode (+ round trip)
 *   [512, 1536)   a dynamic header    -> vhd_header_decode (+ round trip)
 *   [1536, 2048)  a batmap header     -> vhd_batmap_header_decode
 *   [2048, ...)   BAT entries         -> vhd_bat_validate
 *   the same tail                     -> vhd_locator_decode, each code
 *
 * Short inputs are zero-padded.  Every decoded header's locators go
 * through vhd_locator_space().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libvhd.h"

#define MAX_ENTRIES	65536u

static void slice(uint8_t *dst, size_t len, const uint8_t *data, size_t size,
		  size_t off)
{
	memset(dst, 0, len);
	if (off < size)
		memcpy(dst, data + off, size - off < len ? size - off : len);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t codes[] = { VHD_LOC_W2KU, VHD_LOC_W2RU,
					  VHD_LOC_MACX, 0x57693272u, 0 };
	uint8_t fbuf[512], hbuf[1024], bbuf[512], enc[1024];
	struct vhd_footer f;
	struct vhd_header h;
	struct vhd_batmap_header b;
	const uint8_t *tail = size > 2048 ? data + 2048 : NULL;
	size_t tail_len = size > 2048 ? size - 2048 : 0;
	uint32_t *bat, entries, bsecs;
	int fok, hok;

	/* Footer: a decoded footer encodes back to the same bytes. */
	slice(fbuf, sizeof(fbuf), data, size, 0);
	fok = vhd_footer_decode(&f, fbuf) == 0;
	if (fok) {
		vhd_footer_encode(&f, enc);
		if (memcmp(enc, fbuf, 512))
			abort();
		(void)vhd_chs(f.curr_size >> 9);
		(void)vhd_type_name(f.type);
	}
	(void)vhd_chs(be64(fbuf + 40));

	/* Header: the same, and the locator sizes. */
	slice(hbuf, sizeof(hbuf), data, size, 512);
	hok = vhd_header_decode(&h, hbuf) == 0;
	if (hok) {
		vhd_header_encode(&h, enc);
		if (memcmp(enc, hbuf, 1024))
			abort();
	}
	for (int i = 0; i < VHD_LOC_COUNT; i++) {
		uint64_t space = vhd_locator_space(&h.loc[i]);

		if (space && space % 512)
			abort();
	}

	/* Batmap header: encode(decode(x)) decodes to the same fields. */
	slice(bbuf, sizeof(bbuf), data, size, 1536);
	if (vhd_batmap_header_decode(&b, bbuf) == 0) {
		struct vhd_batmap_header b2;

		vhd_batmap_header_encode(&b, bbuf);
		if (vhd_batmap_header_decode(&b2, bbuf) ||
		    b2.batmap_offset != b.batmap_offset ||
		    b2.batmap_size != b.batmap_size ||
		    b2.checksum != b.checksum || b2.marker != b.marker)
			abort();
	}

	/* BAT: the tail as entries, geometry from the header when sane. */
	entries = (uint32_t)(tail_len / 4);
	if (entries > MAX_ENTRIES)
		entries = MAX_ENTRIES;
	bat = malloc((size_t)entries * 4 + 4);
	if (!bat)
		return 0;
	for (uint32_t i = 0; i < entries; i++)
		bat[i] = be32(tail + 4 * (size_t)i);
	bsecs = hok ? (h.block_size >> 9) + 1 : be32(hbuf + 32);
	(void)vhd_bat_validate(bat, entries, bsecs,
			       hok ? h.table_offset : be64(hbuf + 16),
			       fok ? f.curr_size : be64(fbuf + 48));
	(void)vhd_bat_validate(bat, entries, 9, 2048, (uint64_t)size);
	free(bat);

	/* Locator payloads, with roomy and tight output buffers. */
	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
		static const size_t outs[] = { 1, 2, 7, 64, 4096 };

		for (size_t o = 0; o < sizeof(outs) / sizeof(outs[0]); o++) {
			char *out = malloc(outs[o]);

			if (!out)
				return 0;
			if (vhd_locator_decode(codes[c], tail ? tail : fbuf,
					       tail ? tail_len : 0, out,
					       outs[o]) == 0 &&
			    strnlen(out, outs[o]) >= outs[o])
				abort();	/* must be terminated */
			free(out);
		}
	}
	(void)vhd_checksum(data, size, size / 2);
	return 0;
}
