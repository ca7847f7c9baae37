#!/usr/bin/env bash
# scan: the line format, -v, -M, -p (tree), -a (ancestors), -m (glob), and
# a damaged footer giving a scan-error line instead of a crash.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

mkdir d
run "$VHD_UTIL" create -n d/base.vhd -s 4
run "$VHD_UTIL" snapshot -n d/child.vhd -p d/base.vhd
run "$VHD_UTIL" set -n d/base.vhd -f hidden -v 1
run "$VHD_UTIL" set -n d/child.vhd -f marker -v 3
bsize=$(file_size d/base.vhd)
csize=$(file_size d/child.vhd)
cap=$((4 * 1048576))

log "plain lines, basenames"
want="vhd=base.vhd capacity=$cap size=$bsize hidden=1 parent=none
vhd=child.vhd capacity=$cap size=$csize hidden=0 parent=base.vhd"
assert_eq "$want" "$("$VHD_UTIL" scan d/base.vhd d/child.vhd)"

log "-v full paths, -M markers"
want="vhd=d/child.vhd capacity=$cap size=$csize hidden=0 marker=3 parent=$TMPDIR/d/base.vhd"
assert_eq "$want" "$("$VHD_UTIL" scan -v -M d/child.vhd)"

log "-a adds the ancestors"
want="vhd=child.vhd capacity=$cap size=$csize hidden=0 parent=base.vhd
vhd=base.vhd capacity=$cap size=$bsize hidden=1 parent=none"
assert_eq "$want" "$("$VHD_UTIL" scan -a d/child.vhd)"

log "-p prints a tree"
run "$VHD_UTIL" snapshot -n d/grand.vhd -p d/child.vhd -e
gsize=$(file_size d/grand.vhd)
want="vhd=base.vhd capacity=$cap size=$bsize hidden=1 parent=none
   vhd=child.vhd capacity=$cap size=$csize hidden=0 parent=base.vhd
      vhd=grand.vhd capacity=$cap size=$gsize hidden=0 parent=child.vhd"
assert_eq "$want" "$("$VHD_UTIL" scan -p d/grand.vhd d/base.vhd d/child.vhd)"
assert_eq "vhd=grand.vhd capacity=$cap size=$gsize hidden=0 parent=child.vhd (not found in scan)" \
	"$("$VHD_UTIL" scan -p d/grand.vhd)"

log "a corrupt footer (both copies): scan-error, the others still scanned"
cp d/child.vhd d/bad.vhd
printf 'garbage!' | dd of=d/bad.vhd bs=1 seek=$(($(file_size d/bad.vhd) - 512)) conv=notrunc 2>/dev/null
printf 'garbage!' | dd of=d/bad.vhd bs=1 seek=0 conv=notrunc 2>/dev/null
head -c 100 /dev/zero >d/tiny.vhd
rc=0
"$VHD_UTIL" scan -f -c -m "$TMPDIR/d/*.vhd" >out 2>err || rc=$?
cat out err
[ $rc -ne 0 ] || die "scan with a bad image exited 0"
[ $rc -lt 124 ] || die "scan crashed (status $rc)"
assert_eq 1 "$(wc -l <err)" "one line on stderr"
assert_match "^vhd=$TMPDIR/d/bad.vhd scan-error=-22 error-message='[^']+'\$" \
	"$(grep bad.vhd out)"
assert_match "^vhd=$TMPDIR/d/tiny.vhd scan-error=-22 error-message='" "$(grep tiny.vhd out)"
assert_eq 5 "$(wc -l <out)" "one line per image"
assert_eq 3 "$(grep -c 'capacity=' out)" "the good images are scanned"
grep -q "vhd=grand.vhd .*parent=child.vhd" out || die "grand.vhd missing (-f)"

log "a missing file"
rc=0
"$VHD_UTIL" scan d/base.vhd d/nosuch.vhd >out 2>err || rc=$?
if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then die "status $rc"; fi
grep -q "^vhd=d/nosuch.vhd scan-error=-2 " out || die "no scan-error line for a missing file"
grep -q "^vhd=base.vhd " out || die "base.vhd not scanned"

log "usage"
expect_fail "$VHD_UTIL" scan
expect_fail "$VHD_UTIL" scan -Y d/base.vhd
echo ok
