/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvhd: small helpers for vhd-util's query, scan and modify verbs.
 * Same conventions as libvhd.h: 0 or a negative errno, with vhd_errmsg()
 * naming the file and the problem.
 */
#ifndef LIBVHD_INFO_H
#define LIBVHD_INFO_H

#include <stdbool.h>
#include <stdint.h>

#include "libvhd.h"

/* Physical size: end of data + the footer (fixed images: the file size). */
int vhd_phys_size(const vhd_context_t *ctx, uint64_t *bytes);
/* BAT entries in use; for fixed images every block of the disk counts. */
uint32_t vhd_allocated_blocks(const vhd_context_t *ctx);
/* Images in the chain starting at @path, the image itself included. */
int vhd_chain_depth(const char *path, int *depth);
/*
 * Drop every data block of a dynamic or differencing image: clear the
 * batmap, then the BAT, then move the footer to the end of the metadata
 * and truncate.  Each step leaves a valid image behind.
 */
int vhd_zero(vhd_context_t *ctx);
/*
 * Make the file @bytes long (a multiple of 512, at least end of data +
 * footer) by moving the footer to @bytes - 512.  Dynamic images only.
 */
int vhd_set_phys_size(vhd_context_t *ctx, uint64_t bytes);

#endif
