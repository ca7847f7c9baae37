# blktap2-style userspace block devices: libvhd, vhd-util, tapdisk,
# tap-ctl, the blktap2 kernel module and their tests.
#
#   make [VARIANT=default|asan]   build into build/$(VARIANT)/
#   make modules                  blktap2.ko and blkback-pagemap.ko for every
#                                 installed kernel header set
#                                 (build/kernel/<kver>/)
#   make check                    every test layer, ends "N passed, N failed"
#   make check-long               the same with the heavy QEMU guest variants
#   make demo                     show vhd-util, tapdisk and, in a QEMU
#                                 guest, the kernel module at work
#   make bench                    tapdisk against fio, qemu-img bench and loop
#                                 (bench/README.md, bench/results/latest.md)
#
# Sources are found by wildcard: libvhd/*.c, vhd/*.c, tests/unit/test-*.c
# (+ tests/unit/lib/*.c), tests/tools/*.c, tests/fuzz/fuzz-*.c,
# tests/functional/*.sh.

SHELL		:= /bin/bash
.DEFAULT_GOAL	:= all

VARIANT		?= default
BUILD		:= build
B		:= $(BUILD)/$(VARIANT)
FUZZB		:= $(BUILD)/fuzz
RESULTS		:= $(BUILD)/results

CC		?= cc
CLANG		?= clang
AR		?= ar
PREFIX		?= /usr/local
DESTDIR		?=
JOBS		?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_TIME	?= 20
TEST_TIMEOUT	?= 600

WARNINGS	:= -Wall -Wextra -Werror
BASE_CFLAGS	:= -std=c11 -D_GNU_SOURCE $(WARNINGS) -Iinclude -Itapdisk -Itap-ctl
DEPFLAGS	= -MMD -MP

ifeq ($(VARIANT),default)
OPT_CFLAGS	:= -O2 -g
SAN_FLAGS	:=
else ifeq ($(VARIANT),asan)
SAN_FLAGS	:= -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=all
OPT_CFLAGS	:= -O1 -g $(SAN_FLAGS)
else
$(error VARIANT must be 'default' or 'asan', not '$(VARIANT)')
endif

# Extra flags from the command line are appended (make EXTRA_CFLAGS=...).
ALL_CFLAGS	= $(BASE_CFLAGS) $(OPT_CFLAGS) $(EXTRA_CFLAGS)
ALL_LDFLAGS	= $(SAN_FLAGS) $(LDFLAGS)
# Libraries libvhd itself needs; every program linking libvhd.a gets them.
LIBVHD_LIBS	:= -luuid
TAPDISK_LIBS	:= -laio -lz
JSON_LIBS	:= -ljson-c
CMOCKA_LIBS	:= -lcmocka

# ---- sources ----------------------------------------------------------------
LIB_SRCS	:= $(sort $(wildcard libvhd/*.c))
VHD_SRCS	:= $(sort $(wildcard vhd/*.c))
UNIT_SRCS	:= $(sort $(wildcard tests/unit/test-*.c))
UNITLIB_SRCS	:= $(sort $(wildcard tests/unit/lib/*.c))
TOOL_SRCS	:= $(sort $(wildcard tests/tools/*.c))
FUZZ_SRCS	:= $(sort $(wildcard tests/fuzz/fuzz-*.c))
# tapdisk: everything but main() also goes into libtapdisk.a for tests.
TD_MAIN_SRC	:= tapdisk/tapdisk.c
TD_SRCS		:= $(filter-out $(TD_MAIN_SRC),$(sort $(wildcard tapdisk/*.c)))
TAPCTL_SRCS	:= $(sort $(wildcard tap-ctl/*.c))
RIG_SRCS	:= $(sort $(wildcard tests/rig/*.c))
# qcow tools: one main per file in qcow/ (QCOW_TOOLS), the rest shared,
# with tapdisk's qcow codec.
QCOW_TOOLS	:= qcow-create img2qcow qcow2raw
QCOW_MAIN_SRCS	:= $(wildcard $(patsubst %,qcow/%.c,$(QCOW_TOOLS)))
QCOW_LIB_SRCS	:= $(filter-out $(QCOW_MAIN_SRCS),$(sort $(wildcard qcow/*.c))) \
		   tapdisk/qcow-format.c

obj		= $(patsubst %.c,$(B)/obj/%.o,$(1))

LIB_OBJS	:= $(call obj,$(LIB_SRCS))
VHD_OBJS	:= $(call obj,$(VHD_SRCS))
UNITLIB_OBJS	:= $(call obj,$(UNITLIB_SRCS))
LIBVHD		:= $(B)/libvhd.a
VHD_UTIL	:= $(if $(VHD_SRCS),$(B)/vhd-util)
TD_OBJS		:= $(call obj,$(TD_SRCS))
LIBTAPDISK	:= $(B)/libtapdisk.a
TAPDISK		:= $(if $(wildcard $(TD_MAIN_SRC)),$(B)/tapdisk)
TAPCTL_OBJS	:= $(call obj,$(TAPCTL_SRCS))
TAPCTL		:= $(if $(TAPCTL_SRCS),$(B)/tap-ctl)
# The rig speaks the control protocol through tap-ctl's client.
CLIENT_OBJ	:= $(call obj,tap-ctl/client.c)
RIG_OBJS	:= $(call obj,$(RIG_SRCS))
RIG		:= $(if $(RIG_SRCS),$(B)/tests/td-rig)
# The rig without its main(), for its unit tests (test-rig-*).
RIG_LIB_OBJS	:= $(filter-out $(call obj,tests/rig/td-rig.c),$(RIG_OBJS))
UNIT_BINS	:= $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
TOOL_BINS	:= $(patsubst tests/tools/%.c,$(B)/tests/tools/%,$(TOOL_SRCS))
QCOW_LIB_OBJS	:= $(call obj,$(QCOW_LIB_SRCS))
QCOW_BINS	:= $(patsubst qcow/%.c,$(B)/%,$(QCOW_MAIN_SRCS))
# xmsnap's Xen helper (libxenstore, libxenctrl); its vdev-name codec,
# scripts/xen-vdev.c, is unit-tested on its own (test-xen-vdev).
XEN_VDEV_OBJ	:= $(call obj,scripts/xen-vdev.c)
XMSNAP_XEN	:= $(B)/xmsnap-xen
XEN_LIBS	:= -lxenctrl -lxenstore -lxentoollog

HAVE_CLANG	:= $(shell command -v $(CLANG) 2>/dev/null)
FUZZ_CFLAGS	:= $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer \
		   -fno-sanitize-recover=all
FUZZ_LIB_OBJS	:= $(patsubst %.c,$(FUZZB)/obj/%.o,$(LIB_SRCS))
# fuzz-control tests the control-message validator alone.
FUZZ_CTL_OBJS	:= $(FUZZB)/obj/tapdisk/ctl-msg.o
FUZZ_BINS	:= $(patsubst tests/fuzz/%.c,$(FUZZB)/%,$(FUZZ_SRCS))

# ---- build ------------------------------------------------------------------
# Quiet by default; V=1 shows the full commands.
ifeq ($(V),1)
Q		:=
say		:= @:
else
Q		:= @
say		:= @printf '  %-6s %s\n'
endif

.PHONY: all lib vhd-util tapdisk tap-ctl rig unit-tests test-tools fuzzers \
	qcow-tools xmsnap-xen
all: lib vhd-util tapdisk tap-ctl rig unit-tests test-tools qcow-tools \
	xmsnap-xen
	@:
xmsnap-xen: $(XMSNAP_XEN)
	@:
qcow-tools: $(QCOW_BINS)
	@:
tapdisk: $(TAPDISK) $(LIBTAPDISK)
	@:
tap-ctl: $(TAPCTL)
	@:
rig: $(RIG)
	@:
lib: $(LIBVHD)
	@:
vhd-util: $(VHD_UTIL)
	@:
unit-tests: $(UNIT_BINS)
	@:
test-tools: $(TOOL_BINS)
	@:

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(LIBVHD): $(LIB_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(say) AR $@
	$(Q)$(AR) rcs $@ $^

$(B)/vhd-util: $(VHD_OBJS) $(LIBVHD)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(VHD_OBJS) $(LIBVHD) $(LIBVHD_LIBS) $(LDLIBS)

$(LIBTAPDISK): $(TD_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(say) AR $@
	$(Q)$(AR) rcs $@ $^

$(B)/tapdisk: $(call obj,$(TD_MAIN_SRC)) $(LIBTAPDISK) $(LIBVHD)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBTAPDISK) $(LIBVHD) \
		$(TAPDISK_LIBS) $(LIBVHD_LIBS) $(LDLIBS)

$(QCOW_BINS): $(B)/%: $(B)/obj/qcow/%.o $(QCOW_LIB_OBJS)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lz $(LDLIBS)

# Xen's public headers (xen/foreign/*.h) need GNU C: gnu11 for this file.
$(call obj,scripts/xmsnap-xen.c): ALL_CFLAGS += -std=gnu11
$(XMSNAP_XEN): $(call obj,scripts/xmsnap-xen.c) $(XEN_VDEV_OBJ)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(XEN_LIBS) $(LDLIBS)

$(B)/tests/test-xen-vdev: $(B)/obj/tests/unit/test-xen-vdev.o $(XEN_VDEV_OBJ)
	@mkdir -p $(@D)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS)

$(B)/tap-ctl: $(TAPCTL_OBJS)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(JSON_LIBS) $(LDLIBS)

$(B)/tests/td-rig: $(RIG_OBJS) $(CLIENT_OBJ)
	@mkdir -p $(@D)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests of the rig link the rig's objects (the more specific pattern
# wins over test-%).
$(B)/tests/test-rig-%: $(B)/obj/tests/unit/test-rig-%.o $(RIG_LIB_OBJS) $(CLIENT_OBJ)
	@mkdir -p $(@D)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS)

# Unit tests may use libtapdisk.a and libvhd.a (archives: only what a test
# calls is linked in).
$(B)/tests/test-%: $(B)/obj/tests/unit/test-%.o $(UNITLIB_OBJS) $(LIBTAPDISK) $(LIBVHD)
	@mkdir -p $(@D)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(UNITLIB_OBJS) $(LIBTAPDISK) $(LIBVHD) \
		$(CMOCKA_LIBS) $(TAPDISK_LIBS) $(LIBVHD_LIBS) $(LDLIBS)

$(B)/tests/tools/%: $(B)/obj/tests/tools/%.o $(LIBVHD)
	@mkdir -p $(@D)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBVHD) $(LIBVHD_LIBS) $(LDLIBS)

# Fuzzers: clang only, libvhd compiled again with coverage instrumentation.
ifneq ($(HAVE_CLANG),)
fuzzers: $(FUZZ_BINS)
	@:
else
fuzzers:
	@echo "fuzzers: $(CLANG) not found, not built"
endif

$(FUZZB)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(say) CLANG $<
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
		$(DEPFLAGS) -c $< -o $@

$(FUZZB)/fuzz-%: $(FUZZB)/obj/tests/fuzz/fuzz-%.o $(FUZZ_LIB_OBJS)
	$(say) LD $@
	$(Q)$(CLANG) -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(LIBVHD_LIBS) $(LDLIBS)

$(FUZZB)/fuzz-control: $(FUZZB)/obj/tests/fuzz/fuzz-control.o $(FUZZ_CTL_OBJS)
	$(say) LD $@
	$(Q)$(CLANG) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

# fuzz-qcow tests the qcow header, L1 and L2 codec alone.
$(FUZZB)/fuzz-qcow: $(FUZZB)/obj/tests/fuzz/fuzz-qcow.o \
		$(FUZZB)/obj/tapdisk/qcow-format.o
	$(say) LD $@
	$(Q)$(CLANG) -fsanitize=fuzzer,address,undefined -o $@ $^ -lz $(LDLIBS)

# Keep intermediate objects (they are named only through pattern rules),
# and never leave a half-written target behind.
.SECONDARY:
.DELETE_ON_ERROR:

-include $(shell find $(B)/obj $(FUZZB)/obj -name '*.d' 2>/dev/null)

# ---- dependencies -----------------------------------------------------------
.PHONY: deps
deps:
	@scripts/install-deps --check >/dev/null 2>&1 || scripts/install-deps

# ---- tests ------------------------------------------------------------------
# Each check target starts a fresh results file; every layer appends a line
# "passed failed skipped" to it and tests/summarize prints the final
# "N passed, N failed[, N skipped]" line.
PARALLEL	:= $(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(JOBS))
SUBMAKE		:= $(MAKE) --no-print-directory $(PARALLEL)
SAN_ENV		:= ASAN_OPTIONS=detect_leaks=1 \
		   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
RUN_ENV		= TEST_TIMEOUT=$(TEST_TIMEOUT) RESULTS=$(abspath $(RESULTS))

# $(call layer,VARIANT,RUNNER-OPTIONS): build VARIANT, then run its tests;
# a failed build counts as one failed test and skips the layer.
define layer
	if $(SUBMAKE) VARIANT=$(1) all; then \
		$(if $(filter asan,$(1)),$(SAN_ENV)) $(RUN_ENV) \
			tests/run-tests $(2) $(BUILD)/$(1) || rc=1; \
	else \
		echo "FAIL: build ($(1))"; echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

# The valgrind pass reuses the default build; VALGRIND_TESTS picks which
# tests run under memcheck (globs; empty means all of them).
# make check runs the unit tests and the tests of the long-running programs
# (tapdisk, the qcow tools) and a few of vhd-util's; the many short runs
# of vhd-util and tap-ctl (every one also under ASan/UBSan) took more than
# ten minutes of memcheck start-ups, so they are in check-long's pass:
# make check-valgrind VALGRIND_TESTS="$(VALGRIND_TESTS_ALL)" runs it alone.
VALGRIND_TESTS_ALL := test-* vhd-util-* qemu-interop-* tap-ctl-* tapdisk-* \
		      qcow-*
VALGRIND_TESTS	?= test-* qemu-interop-* tapdisk-* qcow-* vhd-util-check-* \
		   vhd-util-coalesce vhd-util-snapshot-chain
# $(call valgrind_layer,GLOBS)
define valgrind_layer
	if [ -x $(BUILD)/default/vhd-util ]; then \
		VALGRIND=1 $(RUN_ENV) tests/run-tests $(BUILD)/default \
			$(1) || rc=1; \
	else \
		echo "FAIL: valgrind (no default build)"; echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

define fuzz_layer
	if [ -z "$(HAVE_CLANG)" ]; then \
		echo "SKIP: fuzzers ($(CLANG) not found)"; \
	elif $(SUBMAKE) fuzzers; then \
		RESULTS=$(abspath $(RESULTS)) tests/run-fuzz $(FUZZB) \
			$(FUZZ_TIME) || rc=1; \
	else \
		echo "FAIL: build (fuzz)"; echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

# checkpatch.pl --no-tree --strict on the kernel sources: one result.
define checkpatch_layer
	if $(MAKE) --no-print-directory -C kernel/blktap2 checkpatch \
		>$(BUILD)/checkpatch.log 2>&1 && \
		$(MAKE) --no-print-directory -C kernel/blkback-pagemap checkpatch \
		>>$(BUILD)/checkpatch.log 2>&1; then \
		echo "PASS: checkpatch (kernel/blktap2, kernel/blkback-pagemap)"; echo "1 0 0" >> $(RESULTS); \
	else \
		echo "FAIL: checkpatch (kernel/blktap2, kernel/blkback-pagemap):"; \
		sed 's/^/    /' $(BUILD)/checkpatch.log | tail -n 40; \
		echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

# make bench-smoke (the bench scripts start and finish on a tiny data
# set; make bench itself is not part of check): one result.
define bench_layer
	if $(MAKE) --no-print-directory bench-smoke \
		>$(BUILD)/bench-smoke.log 2>&1; then \
		echo "PASS: bench-smoke"; echo "1 0 0" >> $(RESULTS); \
	else \
		echo "FAIL: bench-smoke:"; \
		sed 's/^/    /' $(BUILD)/bench-smoke.log | tail -n 40; \
		echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

define begin
	@mkdir -p $(BUILD); rm -f $(RESULTS); rc=0;
endef
define end
	tests/summarize $(RESULTS) || rc=1; exit $$rc
endef

.PHONY: check check-long check-unit check-functional check-asan check-fuzz \
	check-valgrind check-checkpatch check-bench-smoke
# $(call all_layers,CHECK-VM-OPTIONS[,VALGRIND-GLOBS])
define all_layers
	$(begin) \
	echo "=== unit + functional tests (default) ==="; \
	$(call layer,default,) \
	echo "=== unit + functional tests (asan, ubsan) ==="; \
	$(call layer,asan,) \
	echo "=== valgrind memcheck ==="; \
	$(call valgrind_layer,$(or $(2),$(VALGRIND_TESTS))) \
	echo "=== fuzzers ($(FUZZ_TIME) s each) ==="; \
	$(fuzz_layer) \
	echo "=== kernel module: checkpatch ==="; \
	$(checkpatch_layer) \
	echo "=== make bench-smoke ==="; \
	$(bench_layer) \
	echo "=== QEMU guest rig: its self-test ==="; \
	$(call vm_layer,--selftest) \
	echo "=== kernel module in QEMU guests ==="; \
	$(call vm_layer,$(1)) \
	echo "=== Xen: blkback exports a tapdev to a PV guest ==="; \
	$(call xen_layer,) \
	$(end)
endef

check: deps
	$(call all_layers,)

check-long: deps
	$(call all_layers,--long,$(VALGRIND_TESTS_ALL))

check-checkpatch:
	$(begin) $(checkpatch_layer) $(end)

check-bench-smoke:
	$(begin) $(bench_layer) $(end)

check-unit:
	$(begin) $(call layer,$(VARIANT),--unit) $(end)

check-functional:
	$(begin) $(call layer,$(VARIANT),--functional) $(end)

check-asan:
	$(begin) $(call layer,asan,) $(end)

check-fuzz:
	$(begin) $(fuzz_layer) $(end)

check-valgrind:
	@$(SUBMAKE) VARIANT=default all
	$(begin) $(call valgrind_layer,$(VALGRIND_TESTS)) $(end)

# ---- benchmark --------------------------------------------------------------
# Not part of check: minutes of I/O on a 1 GiB file in bench/data/, then
# a QEMU guest (bench/README.md).  bench-smoke runs the same script on a
# tiny data set without the guest, to show it works.
BENCH_PROGS	:= tapdisk tap-ctl rig vhd-util test-tools qcow-tools vm-tools
.PHONY: bench bench-smoke
bench:
	@$(SUBMAKE) VARIANT=default $(BENCH_PROGS)
	@bench/run $(BUILD)/default

bench-smoke:
	@$(SUBMAKE) VARIANT=default $(BENCH_PROGS)
	@BENCH_SIZE_MB=64 BENCH_SECONDS=1 BENCH_REPS=1 BENCH_CG_OPS=200 \
		BENCH_VM=0 BENCH_DATA=$(BUILD)/bench-smoke \
		BENCH_OUT=$(BUILD)/bench-smoke bench/run $(BUILD)/default

# ---- QEMU guest tests (tests/vm) --------------------------------------------
# The kernel module in QEMU guests (TCG) running Debian's 6.1 kernel, and
# 6.12 when installed: tests/vm/check-vm builds blktap2.ko for each and an
# initramfs with the default build's programs, boots it and counts the
# guest's VMTEST lines.  check-vm-long: the heavier variants.
# check-vm-selftest: the rig's own checks (failures, hangs, panics are seen).
# VM_TESTS='10-*,60-*' picks guest scripts.
VM_TOOLS	:= $(BUILD)/default/tests/hostile-ring
VM_PROGS	:= tapdisk tap-ctl vhd-util rig vm-tools qcow-tools

.PHONY: vm-tools check-vm check-vm-long check-vm-selftest
vm-tools: $(if $(filter default,$(VARIANT)),$(VM_TOOLS))
	@:

$(B)/tests/hostile-ring: $(call obj,tests/vm/hostile-ring.c)
	@mkdir -p $(@D)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread $(LDLIBS)

# $(call vm_layer,CHECK-VM-OPTIONS)
define vm_layer
	if $(SUBMAKE) VARIANT=default $(VM_PROGS); then \
		RESULTS=$(abspath $(RESULTS)) tests/vm/check-vm $(1) \
			$(if $(VM_TESTS),--tests '$(VM_TESTS)') || rc=1; \
	else \
		echo "FAIL: build (default)"; echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

check-vm: deps
	$(begin) $(call vm_layer,) $(end)

check-vm-long: deps
	$(begin) $(call vm_layer,--long) $(end)

check-vm-selftest: deps
	$(begin) $(call vm_layer,--selftest) $(end)

# ---- Xen end to end (tests/xen) ---------------------------------------------
# Xen 4.17, Debian's 6.1 kernel as dom0 and a PV guest under QEMU (TCG):
# unmodified blkback exports a vhd: and an aio: tap to the guest
# (tests/xen/README.md; about 3 minutes, more with run 3's live snapshots).
XEN_PROGS	:= tapdisk tap-ctl vhd-util xmsnap-xen

.PHONY: check-xen
# $(call xen_layer,CHECK-XEN-ARGS)
define xen_layer
	if $(SUBMAKE) VARIANT=default $(XEN_PROGS); then \
		RESULTS=$(abspath $(RESULTS)) tests/xen/check-xen \
			$(BUILD)/default $(1) || rc=1; \
	else \
		echo "FAIL: build (default)"; echo "0 1 0" >> $(RESULTS); rc=1; \
	fi;
endef

check-xen: deps
	$(begin) $(call xen_layer,) $(end)

# ---- demo, install, clean ---------------------------------------------------
# The demo: vhd-util and tapdisk on the host (scripts/demo), then the main
# job with the kernel module in a QEMU guest (tests/vm/guest/95-demo.sh).
.PHONY: demo modules modules_install install clean
demo: deps
	@$(SUBMAKE) VARIANT=default vhd-util tapdisk tap-ctl rig vm-tools
	@scripts/demo $(BUILD)/default/vhd-util
	@echo
	@echo "=== The main job with the blktap2 kernel module, in a QEMU guest ==="
	@tests/vm/check-vm --demo $(BUILD)/default

modules:
	@$(MAKE) --no-print-directory -C kernel/blktap2
	@$(MAKE) --no-print-directory -C kernel/blkback-pagemap

# modules_install: the modules built for KVER (default: the running
# kernel) into /lib/modules/KVER/updates/, then depmod (unless DESTDIR).
KVER		?= $(shell uname -r)
KMOD_DIR	:= build/kernel/$(KVER)
modules_install:
	@[ -f $(KMOD_DIR)/blktap2.ko ] && \
	 [ -f $(KMOD_DIR)/blkback-pagemap.ko ] || { \
		echo "modules_install: no modules built for $(KVER) in" \
		     "$(KMOD_DIR) (install linux-headers-$(KVER), then" \
		     "make modules)" >&2; exit 1; }
	install -d $(DESTDIR)/lib/modules/$(KVER)/updates
	install -m 0644 $(KMOD_DIR)/blktap2.ko $(KMOD_DIR)/blkback-pagemap.ko \
		$(DESTDIR)/lib/modules/$(KVER)/updates/
	$(if $(DESTDIR),,depmod -a $(KVER))

MAN8		:= $(wildcard man/*.8)
install:
	@$(SUBMAKE) VARIANT=default vhd-util tapdisk tap-ctl qcow-tools xmsnap-xen
	install -d $(DESTDIR)$(PREFIX)/sbin
	install -m 0755 $(BUILD)/default/vhd-util $(BUILD)/default/tapdisk \
		$(BUILD)/default/tap-ctl $(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 $(patsubst %,$(BUILD)/default/%,$(QCOW_TOOLS)) \
		$(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 $(BUILD)/default/xmsnap-xen $(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 scripts/xmsnap $(DESTDIR)$(PREFIX)/sbin/
ifneq ($(MAN8),)
	install -d $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0644 $(MAN8) $(DESTDIR)$(PREFIX)/share/man/man8/
endif

clean:
	rm -rf $(BUILD)
