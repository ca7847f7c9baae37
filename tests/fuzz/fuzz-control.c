// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target for td_ctl_validate(), the gate every control request
 * passes before tapdisk looks at it.  Input layout:
 *
 *   byte 0        number of descriptors that "arrived" (mod 5: 0..4)
 *   bytes 1...    the message, as received (deliberately unaligned)
 *
 * Besides not crashing: an accepted message is exactly its type's size and
 * leaves no reason; a refused one gets -EPROTO or -EINVAL and a non-empty,
 * terminated reason, also when the reason buffer is tiny.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[TD_ERRMSG_MAX], tiny[4];
	struct td_ctl_msg h;
	int nfds, err, err2;

	if (!size)
		return 0;
	nfds = data[0] % 5;
	data++;
	size--;

	memset(why, 0x55, sizeof(why));
	err = td_ctl_validate(data, size, nfds, why, sizeof(why));
	if (!memchr(why, '\0', sizeof(why)))
		abort();
	if (err == 0) {
		memcpy(&h, data, TD_CTL_HDR_SIZE);
		if (why[0] || size != td_ctl_request_size(h.type) ||
		    h.length != size || h.magic != TD_CTL_MAGIC)
			abort();
		if (h.type == TD_CTL_ATTACH ? nfds != 0 && nfds != 3 : nfds)
			abort();
	} else if ((err != -EPROTO && err != -EINVAL) || !why[0]) {
		abort();
	}

	/* The verdict does not depend on the reason buffer. */
	memset(tiny, 0x55, sizeof(tiny));
	err2 = td_ctl_validate(data, size, nfds, tiny, sizeof(tiny));
	if (err2 != err || !memchr(tiny, '\0', sizeof(tiny)))
		abort();
	if (td_ctl_validate(data, size, nfds, NULL, 0) != err)
		abort();
	return 0;
}
