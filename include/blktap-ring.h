/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR LGPL-2.1-or-later */
/*
 * The blktap2 ring: the one ABI between the kernel module (or the
 * user-space test rig that stands in for it) and a tapdisk.
 *
 * The front is the kernel module, or tests/rig (the user-space stand-in
 * used by tests and benchmarks); the back is tapdisk.  Layout is pinned by
 * tests/unit/test-ring-abi.c.
 *
 * One shared mapping, laid out as:
 *
 *   offset 0                 struct blktap_ring_header (4096 bytes)
 *   req_offset               nr_slots x struct blktap_ring_request
 *   rsp_offset               nr_slots x struct blktap_ring_response
 *   data_offset (page)       nr_slots x slot_bytes of request data
 *
 * The producer of requests is the kernel ("front"); the producer of
 * responses is tapdisk ("back").  Indices are free-running 32-bit counters;
 * entry i lives at index i & (nr_slots - 1).  Each request owns one data
 * slot for its lifetime: slot s holds bytes [s * slot_bytes, (s + 1) *
 * slot_bytes) of the data area, so no segment lists cross the ring and the
 * front never trusts an address from the back.
 *
 * What the front checks on every response (the back is untrusted):
 *   - rsp_prod - rsp_cons <= nr_slots, else the tap is failed;
 *   - id decodes to a slot < nr_slots that is in flight with the same
 *     generation, else the response is dropped and counted;
 *   - status is 0 or in [-4095, -1], else the request fails with EIO.
 *
 * All fields are in host byte order: both sides run on the same machine.
 *
 * Who writes what in the header:
 *   front, before handing the ring over: magic, version, nr_slots,
 *     slot_bytes, the offsets and map_size (the back checks them against
 *     blktap_ring_*_offset() and refuses a ring that disagrees);
 *   back, when it opens an image (and again on unpause): capacity,
 *     sector_size and features, which the front reads before it exposes
 *     the disk and validates (capacity <= 2^48 sectors, sector size 512 or
 *     4096, unknown feature bits ignored).
 *
 * Notification.  Each side publishes entries, then a write barrier, then
 * its producer index.  It then wakes the other side only when the index
 * passed the other side's event index (blktap_ring_need_wake()); a side
 * about to sleep sets its event index to "one more than I have consumed"
 * and re-checks the producer index, so no wakeup is lost.  The wakeup
 * itself is transport specific: the rig uses two eventfds passed to
 * tapdisk over the control socket; the kernel uses poll() on the ring
 * device for requests and an ioctl for responses.
 *
 * Ordering between requests: none.  The front must not issue overlapping
 * writes, or a read overlapping a write, concurrently and expect an order;
 * FLUSH covers every write that was completed before FLUSH was issued.
 */
#ifndef BLKTAP_RING_H
#define BLKTAP_RING_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define BLKTAP_RING_MAGIC	0x32525442u	/* "BTR2" in memory, LE */
#define BLKTAP_RING_VERSION	1u

#define BLKTAP_PAGE_SIZE	4096u
#define BLKTAP_SECTOR_SHIFT	9

/* Queue depth: a power of two, up to this many requests in flight. */
#define BLKTAP_RING_MAX_SLOTS	256u
#define BLKTAP_RING_DEF_SLOTS	128u
/* Bytes of data per request: a multiple of the page size, up to 4 MiB. */
#define BLKTAP_RING_MAX_SLOT_BYTES	(4u << 20)
#define BLKTAP_RING_DEF_SLOT_BYTES	(1u << 20)

/* Request operations. */
#define BLKTAP_OP_READ		0
#define BLKTAP_OP_WRITE		1
#define BLKTAP_OP_FLUSH		2	/* no data; make earlier writes stable */
#define BLKTAP_OP_DISCARD	3	/* no data; the range may read back anything */
#define BLKTAP_OP_WRITE_ZEROES	4	/* no data; the range reads back zeros */
#define BLKTAP_OP_MAX		4

/* Request flags. */
#define BLKTAP_REQ_FUA		0x01	/* write: stable before the response */

/* A request that no guest issued (dom0's own I/O). */
#define BLKTAP_DOMID_NONE	0xFFFFu

/*
 * The id carries the slot in its low 16 bits and a generation the front
 * bumps each time the slot is reused, so a stale or duplicated response
 * is recognised.
 */
#define BLKTAP_ID_SLOT(id)	((__u32)((id) & 0xFFFFu))
#define BLKTAP_ID_GEN(id)	((id) >> 16)
#define BLKTAP_MAKE_ID(gen, slot) (((__u64)(gen) << 16) | ((slot) & 0xFFFFu))

struct blktap_ring_header {
	__u32	magic;		/* BLKTAP_RING_MAGIC; set by the front */
	__u32	version;	/* BLKTAP_RING_VERSION */
	__u32	nr_slots;	/* queue depth, a power of two */
	__u32	slot_bytes;	/* data bytes per slot, page multiple */
	__u64	req_offset;	/* byte offsets of the three areas */
	__u64	rsp_offset;
	__u64	data_offset;	/* page aligned */
	__u64	map_size;	/* bytes to mmap in all */
	__u64	capacity;	/* disk size in 512-byte sectors (back) */
	__u32	sector_size;	/* logical block size in bytes (back) */
	__u32	features;	/* BLKTAP_FEAT_*, what the disk accepts (back) */

	/*
	 * Producer and event counters, each on its own cache line: the
	 * front writes req_prod and rsp_event, the back req_event and
	 * rsp_prod.
	 */
	__u32	req_prod;
	__u8	pad1[60];
	__u32	req_event;	/* back wants a wakeup when req_prod passes it */
	__u8	pad2[60];
	__u32	rsp_prod;
	__u8	pad3[60];
	__u32	rsp_event;	/* front wants a wakeup when rsp_prod passes it */
	__u8	pad4[BLKTAP_PAGE_SIZE - 4 * 64 - 4];
};

#define BLKTAP_FEAT_FLUSH	0x01
#define BLKTAP_FEAT_FUA		0x02
#define BLKTAP_FEAT_DISCARD	0x04
#define BLKTAP_FEAT_WRITE_ZEROES 0x08
#define BLKTAP_FEAT_READONLY	0x10

struct blktap_ring_request {
	__u64	id;		/* BLKTAP_MAKE_ID(gen, slot); echoed back */
	__u64	sector;		/* first 512-byte sector */
	__u32	nr_sectors;	/* <= slot_bytes >> 9 for READ/WRITE */
	__u8	op;		/* BLKTAP_OP_* */
	__u8	flags;		/* BLKTAP_REQ_* */
	__u16	domid;		/* issuing guest, or BLKTAP_DOMID_NONE */
	__u32	reserved[2];	/* zero */
};

struct blktap_ring_response {
	__u64	id;		/* the request's id, unchanged */
	__s32	status;		/* 0, or a negative errno */
	__u32	reserved;	/* zero */
};

/*
 * Should the producer that moved its index from @old to @new wake the
 * other side, whose event index is @event?  True when @event lies in
 * (old, new], counted modulo 2^32.
 */
static inline int blktap_ring_need_wake(__u32 new_idx, __u32 old_idx,
					__u32 event)
{
	return (__u32)(new_idx - event) < (__u32)(new_idx - old_idx);
}

/* Where things are, for a given depth and slot size (both sides agree). */
static inline __u64 blktap_ring_req_offset(void)
{
	return BLKTAP_PAGE_SIZE;
}

static inline __u64 blktap_ring_rsp_offset(__u32 nr_slots)
{
	return blktap_ring_req_offset() +
	       (__u64)nr_slots * sizeof(struct blktap_ring_request);
}

static inline __u64 blktap_ring_data_offset(__u32 nr_slots)
{
	__u64 end = blktap_ring_rsp_offset(nr_slots) +
		    (__u64)nr_slots * sizeof(struct blktap_ring_response);

	return (end + BLKTAP_PAGE_SIZE - 1) & ~(__u64)(BLKTAP_PAGE_SIZE - 1);
}

static inline __u64 blktap_ring_map_size(__u32 nr_slots, __u32 slot_bytes)
{
	return blktap_ring_data_offset(nr_slots) + (__u64)nr_slots * slot_bytes;
}

/*
 * The kernel's devices (issue 4; the rig has no equivalent).
 *
 * /dev/xen/blktap-2/control (misc device): allocates and frees taps.
 *   BLKTAP2_IOC_ALLOC_TAP	-> struct blktap2_alloc: the new tap's minor;
 *				   /dev/xen/blktap-2/blktapN appears.
 *   BLKTAP2_IOC_FREE_TAP	minor by value; EBUSY while its ring is open
 *				or its block device exists.  Exception: a
 *				tapdevN left behind by a tapdisk that died
 *				(held or failing I/O) and that nobody has
 *				open is removed with the tap.
 *
 * /dev/xen/blktap-2/blktapN (char device, one opener: the tapdisk):
 *   BLKTAP_IOC_SETUP_RING	struct blktap_ring_setup: the kernel allocates
 *				the ring, writes the header's front fields;
 *				tapdisk then mmaps map_size bytes at 0.
 *   BLKTAP_IOC_CREATE_DEVICE	struct blktap_device_params: make (or, after
 *				a tapdisk died, re-attach) tapdevN; a
 *				re-attach must give the same capacity, and
 *				the held requests are reissued.
 *   BLKTAP_IOC_REMOVE_DEVICE	flags by value (BLKTAP_REMOVE_FORCE): EBUSY
 *				while tapdevN is open unless forced, which
 *				fails outstanding I/O with EIO.  0 when
 *				there is no tapdevN.
 *   BLKTAP_IOC_KICK		responses were published (rsp_prod moved).
 *				EIO once the ring is failed.
 *   poll()			POLLIN when requests were published.
 *				Level-triggered: while req_prod has passed
 *				req_event (the back has not consumed them).
 *   read()			optional: 8 bytes, the number of requests
 *				published since the last read(), EAGAIN if
 *				none; POLLIN stays off until the next one
 *				(like an eventfd, for a back that leaves
 *				requests on the ring on purpose).
 * Only the process that mapped the ring may answer on it.
 */
#define BLKTAP_IOC_MAGIC	0xB7

struct blktap2_alloc {
	__u32	minor;		/* out */
	__u32	reserved;
};

struct blktap_ring_setup {
	__u32	nr_slots;	/* power of two, <= BLKTAP_RING_MAX_SLOTS */
	__u32	slot_bytes;	/* page multiple, <= BLKTAP_RING_MAX_SLOT_BYTES */
	__u64	map_size;	/* out: bytes to mmap */
};

struct blktap_device_params {
	__u64	capacity;	/* 512-byte sectors */
	__u32	sector_size;	/* logical: 512 or 4096 */
	__u32	physical_sector_size;	/* >= sector_size, power of two;
					 * 0: same as sector_size */
	__u32	features;	/* BLKTAP_FEAT_* */
	__u32	reserved;	/* zero */
};

#define BLKTAP_REMOVE_FORCE	0x1

#define BLKTAP2_IOC_ALLOC_TAP	_IOR(BLKTAP_IOC_MAGIC, 1, struct blktap2_alloc)
#define BLKTAP2_IOC_FREE_TAP	_IO(BLKTAP_IOC_MAGIC, 2)
#define BLKTAP_IOC_SETUP_RING	_IOWR(BLKTAP_IOC_MAGIC, 10, \
				      struct blktap_ring_setup)
#define BLKTAP_IOC_CREATE_DEVICE _IOW(BLKTAP_IOC_MAGIC, 11, \
				      struct blktap_device_params)
#define BLKTAP_IOC_REMOVE_DEVICE _IO(BLKTAP_IOC_MAGIC, 12)
#define BLKTAP_IOC_KICK		_IO(BLKTAP_IOC_MAGIC, 13)

#define BLKTAP2_DEV_DIR		"/dev/xen/blktap-2"
#define BLKTAP2_CONTROL		BLKTAP2_DEV_DIR "/control"
#define BLKTAP2_RING_FMT	BLKTAP2_DEV_DIR "/blktap%u"
#define BLKTAP2_TAPDEV_FMT	BLKTAP2_DEV_DIR "/tapdev%u"

#endif /* BLKTAP_RING_H */
