/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Xen virtual block device numbers: the name a guest's disk has in its
 * configuration (xvda, xvdb3, hdc, sda1, d5p2, or a plain number) and the
 * device id the frontend and blkback know it by in xenstore
 * (device/vbd/DEVID).  The encoding is Xen's (docs/misc/vbd-interface):
 *
 *   xvd, disks 0..15, partitions 0..15   202 << 8 | disk << 4 | part
 *   xvd, any other disk < 2^20, part < 256   1 << 28 | disk << 8 | part
 *   hda, hdb / hdc, hdd, partitions 0..63   3 << 8 / 22 << 8 | (disk & 1) << 6 | part
 *   sda .. sdp, partitions 0..15          8 << 8 | disk << 4 | part
 *   d<disk>[p<part>]                      as xvd
 *
 * xvd disk letters count like spreadsheet columns: a..z, aa..az, ba, ...
 */
#ifndef XEN_VDEV_H
#define XEN_VDEV_H

#include <stddef.h>
#include <stdint.h>

/* Parse @name into *devid.  0, or -EINVAL for a name Xen has no number for. */
int xen_vdev_parse(const char *name, uint32_t *devid);

/*
 * Write the canonical name of @devid into @buf: xvd.., hd.., sd.., or the
 * decimal number when it has no name.  0, or -ENOSPC when @len is too small.
 */
int xen_vdev_name(uint32_t devid, char *buf, size_t len);

#endif
