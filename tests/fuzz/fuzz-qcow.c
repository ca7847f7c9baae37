// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target for the qcow codec (tapdisk/qcow-format.c): the input
 * is a whole image file.  The header (and blktap's extension) is decoded
 * and checked; when accepted, the L1 table is walked, every L2 table it
 * points to is checked entry by entry, compressed clusters that pass are
 * inflated, and the L1 checksum is computed.  Besides not crashing: an
 * accepted header has a consistent geometry with the L1 table inside the
 * file, and an accepted entry lies inside it; a refusal has a reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qcow-format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_l2(const struct qcow_header *h, const struct qcow_geom *g,
		    const uint8_t *data, size_t size, uint64_t off,
		    z_stream *zs, uint8_t *out)
{
	char why[200];

	for (uint32_t c = 0; c < g->l2_size; c++) {
		uint64_t e = qcow_get_be64(data + off + (size_t)c * 8);

		if (!e)
			continue;
		why[0] = '\0';
		if (qcow_l2_entry_check(g, h->cluster_bits, e, size, why,
					sizeof(why))) {
			if (!why[0])
				abort();
			continue;
		}
		if (!qcow_is_compressed(e)) {
			if (e >= size || e % 512)
				abort();
			continue;
		}
		{
			uint64_t co = qcow_coff(e, h->cluster_bits);
			uint32_t len = qcow_csize(e, h->cluster_bits);

			if (co > size || len > size - co || !len)
				abort();
			qcow_inflate(zs, data + co, len, out, g->cluster_size);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t head[QCOW_HEAD_BYTES] = { 0 };
	struct qcow_header h;
	struct qcow_geom g;
	char why[300];
	z_stream zs = { 0 };
	uint8_t *out;
	uint64_t walked = 0;

	memcpy(head, data, size < sizeof(head) ? size : sizeof(head));
	qcow_header_decode(&h, head);
	why[0] = '\0';
	if (qcow_header_check(&h, size, &g, why, sizeof(why))) {
		if (!why[0])
			abort();
		return 0;
	}
	if (g.cluster_size != 1u << h.cluster_bits ||
	    g.l2_bytes != g.l2_size * 8 || h.l1_off > size ||
	    g.l1_bytes > size - h.l1_off || g.sectors != h.size >> 9)
		abort();
	(void)qcow_l1_cksum(data + h.l1_off, g.l1_bytes);
	out = malloc(g.cluster_size);
	if (!out || inflateInit2(&zs, -15) != Z_OK) {
		free(out);
		return 0;
	}
	for (uint64_t k = 0; k < g.l1_size && walked < 64; k++) {
		uint64_t off = qcow_get_be64(data + h.l1_off + k * 8);

		if (!off || off > size || g.l2_bytes > size - off)
			continue;
		walked++;
		walk_l2(&h, &g, data, size, off, &zs, out);
	}
	inflateEnd(&zs);
	free(out);
	return 0;
}
