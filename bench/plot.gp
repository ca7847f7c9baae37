# SPDX-License-Identifier: LGPL-2.1-or-later
# The chart of make bench (bench/run writes the data):
#   gnuplot -e "datafile='latest.dat'; outfile='latest.png'; panels=3" bench/plot.gp
# datafile: blocks separated by two blank lines (gnuplot's "index"), each a
# header line "workload NAME..." then one line per workload with IOPS
# relative to the panel's reference contender ("-": not run).
# Panels: 0 host workloads / fio (not the ram column: it would dwarf the
# rest), 1 sequential / qemu-img-raw,
# 2 (when panels=3) the QEMU guest / loop-dio.

if (!exists("panels")) panels = 2
set terminal pngcairo size 1100, (panels * 360) font "sans,10"
set output outfile
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical
set grid ytics
set yrange [0:*]
set xtics nomirror
set ytics nomirror
set multiplot layout panels, 1

set title "host: IOPS relative to fio on the raw file (target lines 0.95 / 0.98)"
set ylabel "IOPS / fio"
plot for [c = 2:5] datafile index 0 using c:xtic(1) title columnheader(c), \
	0.95 with lines dashtype 2 lc rgb "#444444" notitle, \
	1.0 with lines lc rgb "#000000" notitle

set title "sequential, as qemu-img bench does it: IOPS relative to qemu-img bench on the raw file"
set ylabel "IOPS / qemu-img-raw"
plot for [c = 2:4] datafile index 1 using c:xtic(1) title columnheader(c), \
	1.0 with lines lc rgb "#000000" notitle

if (panels >= 3) {
	set title "QEMU guest (TCG): fio IOPS relative to a loop device with direct I/O (target 1.0)"
	set ylabel "IOPS / loop-dio"
	plot for [c = 2:4] datafile index 2 using c:xtic(1) title columnheader(c), \
		1.0 with lines lc rgb "#000000" notitle
}
unset multiplot
