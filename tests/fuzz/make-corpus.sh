#!/usr/bin/env bash
# Generate the seed corpora of the fuzzers: tiny but valid images (4 KiB
# blocks, so that allocated blocks fit in a few KiB) and some look-alikes.
#
#   tests/fuzz/make-corpus.sh [OUTDIR]     (default: tests/fuzz/corpus)
#
# Writes OUTDIR/fuzz-open/*.vhd (whole images) and OUTDIR/fuzz-parsers/*
# (footer + header + batmap header + BAT/locator tail, the layout
# fuzz-parsers.c expects).  Deterministic: the same files every run.
set -euo pipefail
OUT=${1:-$(cd "$(dirname "$0")" && pwd)/corpus}
mkdir -p "$OUT/fuzz-open" "$OUT/fuzz-parsers"
exec python3 - "$OUT" <<'PY'
import os, struct, sys

out = sys.argv[1]
BS = 4096                  # block size: 8 sectors of data + 1 bitmap sector
BLK = BS + 512

def csum(b, off):
    b = bytearray(b); b[off:off + 4] = b'\0' * 4
    return (~sum(b)) & 0xffffffff

def footer(size, typ, data_offset, creator=b'tap\0', uuid=b'\x11' * 16):
    f = bytearray(512)
    f[0:8] = b'conectix'
    struct.pack_into('>IIQI4sII', f, 8, 2, 0x10000, data_offset, 0x2a000000,
                     creator, 0x10003, 0)
    struct.pack_into('>QQII', f, 40, size, size, 0x01000411, typ)
    f[68:84] = uuid
    struct.pack_into('>I', f, 64, csum(f, 64))
    return bytes(f)

def header(entries, table=1536, locs=(), name=''):
    h = bytearray(1024)
    h[0:8] = b'cxsparse'
    struct.pack_into('>QQIII', h, 8, 2**64 - 1, table, 0x10000, entries, BS)
    if locs:
        h[40:56] = b'\x22' * 16
        nm = name.encode('utf-16-be')
        h[64:64 + len(nm)] = nm
    for i, (code, space, length, off) in enumerate(locs):
        struct.pack_into('>IIIIQ', h, 576 + 24 * i, code, space, length, 0, off)
    struct.pack_into('>I', h, 36, csum(h, 36))
    return bytes(h)

def batmap(off, secs, bits):
    m = bytearray(secs * 512)
    for b in bits:
        m[b >> 3] |= 0x80 >> (b & 7)
    hdr = bytearray(512)
    hdr[0:8] = b'tdbatmap'
    struct.pack_into('>QIII', hdr, 8, off, secs, 0x10002,
                     (~sum(m)) & 0xffffffff)
    return bytes(hdr), bytes(m)

def dynamic(entries, blocks, typ=3, locs=(), locdata=b'', full=(), qemu=False):
    """blocks: {index: byte pattern}."""
    size = entries * BS
    bat_bytes = (entries * 4 + 511) // 512 * 512
    bmh_off = 1536 + bat_bytes
    f = footer(size, typ, 512)
    img = bytearray(f)
    bat = [0xffffffff] * entries
    if qemu:                        # QEMU: the first block right after the BAT
        end = bmh_off
    else:
        hdr_b, map_b = batmap(bmh_off + 512, 1, full)
        end = bmh_off + 512 + len(map_b)
    locs2 = []
    for code, text in locs:
        locs2.append((code, 512, len(text), end))
        end += 512
    h = header(entries, locs=locs2, name='base.vhd')
    img += h
    img += b'\xff' * bat_bytes
    if not qemu:
        img += hdr_b + map_b
    for _, text in locs:
        img += text.ljust(512, b'\0')
    assert len(img) == end
    for i, pat in sorted(blocks.items()):
        bat[i] = len(img) // 512
        bm = b'\xff' if i in full or qemu else b'\xf0'
        img += bm.ljust(512, b'\0') + bytes([pat]) * BS
    struct.pack_into('>%dI' % entries, img, 1536, *bat)
    img += f
    return bytes(img)

def fixed(size):
    return b'\x5a' * size + footer(size, 2, 2**64 - 1)

W2 = 0x57327275; WK = 0x57326B75; MX = 0x4D616358
rel = '.\\base.vhd'.encode('utf-16-le')
images = {
    'dynamic-empty.vhd': dynamic(16, {}),
    'dynamic-2blocks.vhd': dynamic(16, {0: 0xab, 5: 0xcd}, full=(0,)),
    'dynamic-small.vhd': dynamic(1, {0: 0x01}, full=(0,)),
    'diff.vhd': dynamic(8, {1: 0x77}, typ=4,
                        locs=((MX, b'file://./base.vhd'), (WK, '/tmp/base.vhd'.encode('utf-16-le')),
                              (W2, rel))),
    'qemu-over-batmap.vhd': dynamic(16, {0: 0xab, 2: 0xcd}, qemu=True),
    'fixed.vhd': fixed(4096),
}
for name, img in images.items():
    with open(os.path.join(out, 'fuzz-open', name), 'wb') as fh:
        fh.write(img)
    # The parsers' layout: the first 2 KiB hold footer copy, header, BAT
    # (standing in for the batmap header slot) and then the rest.
    with open(os.path.join(out, 'fuzz-parsers', name), 'wb') as fh:
        fh.write(img[:4096])
# A batmap header in its slot for the parsers, and locator payloads.
hdr_b, map_b = batmap(2560, 1, (0, 3))
base = images['dynamic-2blocks.vhd'][:1536]
for name, tail in (('utf16', rel), ('macx', b'file://../dir/base.vhd'),
                   ('surrogate', 'a\U0001F600b'.encode('utf-16-le'))):
    with open(os.path.join(out, 'fuzz-parsers', 'batmap-' + name), 'wb') as fh:
        fh.write(base + hdr_b + tail)
PY
