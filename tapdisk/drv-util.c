// SPDX-License-Identifier: LGPL-2.1-or-later
/* Helpers the image drivers share (drv-util.h). */
#include <errno.h>

#include "drv-util.h"

bool td_treq_all_filled(const struct td_treq *t, uint32_t i, uint32_t n)
{
	for (uint32_t k = i; k < i + n; k++)
		if (!td_treq_filled(t, k))
			return false;
	return true;
}

static bool wanted(const struct td_treq *t, uint32_t i, const uint8_t *bm,
		   uint32_t bit)
{
	if (bm && !(bm[bit >> 3] & (0x80 >> (bit & 7))))
		return false;
	return !td_treq_filled(t, i);
}

int td_read_unfilled(struct td_treq *t, struct tio_file *file, uint32_t i,
		     uint32_t n, const uint8_t *bm, uint32_t first,
		     uint64_t off)
{
	uint32_t j = 0, k;

	while (j < n) {
		if (!wanted(t, i + j, bm, first + j)) {
			j++;
			continue;
		}
		for (k = j + 1; k < n && wanted(t, i + k, bm, first + k); k++)
			;
		if (td_treq_submit(t, file, TIO_READ,
				   t->buf + ((size_t)(i + j) << 9),
				   (size_t)(k - j) << 9,
				   off + ((uint64_t)j << 9), 0)) {
			t->cursor = i + j;
			td_treq_wait_tio(t);
			return -EAGAIN;
		}
		td_treq_fill(t, i + j, k - j);
		j = k;
	}
	return 0;
}
