# SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
#
# The build recipe shared by the out-of-tree modules under kernel/: each
# module's Makefile sets what differs, then includes this file.
#
#   SRC := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
#   NAME := <module>            builds <module>.ko, names the messages
#   KMOD_SUBDIR :=              where it builds, under build/kernel/<kver>/:
#                               empty: there itself; a name: that
#                               subdirectory, and <module>.ko is then
#                               copied up to build/kernel/<kver>/
#   KMOD_KBUILD_ARGS := ...     extra variables for Kbuild (VAR="value")
#   CHECKPATCH_IGNORE := f:T    check file f (in SRC) on its own, with
#                               --ignore T (T: checkpatch types, comma
#                               separated); every other *.c and *.h is
#                               checked with nothing ignored
#   include $(dir $(SRC))kmod.mk
#
# Targets: all (= modules, the default), modules, checkpatch, clean.
# Variables for the user: KDIR (one header set instead of every
# /usr/src/linux-headers-*-amd64), LINUX_SOURCE (the Debian tarball that
# checkpatch.pl comes from); anything else on the command line (C=2, W=1,
# V=1) reaches Kbuild as usual.
#
# Kbuild writes objects next to the sources it builds, so each kernel
# version gets its own directory of symlinks to them under build/kernel/.
# (When Kbuild itself reads that directory, it takes the Kbuild file.)

ifeq ($(strip $(NAME)),)
$(error kmod.mk: include it from a module Makefile that sets NAME and SRC)
endif

SHELL		:= /bin/bash
TOP		:= $(abspath $(SRC)/../..)
OUT		:= $(TOP)/build/kernel
CPDIR		:= $(TOP)/build/checkpatch
LINUX_SOURCE	?= /usr/src/linux-source-6.1.tar.xz

KDIRS		:= $(if $(KDIR),$(KDIR),$(sort $(wildcard /usr/src/linux-headers-*-amd64)))
SOURCES		:= $(notdir $(wildcard $(SRC)/*.c $(SRC)/*.h)) Kbuild
KMOD_OUTDIR	= $(OUT)/$$v$(if $(KMOD_SUBDIR),/$(KMOD_SUBDIR))

# CHECKPATCH_IGNORE entries, "file:types", split in two.
cp_file		= $(SRC)/$(word 1,$(subst :, ,$(1)))
cp_types	= $(word 2,$(subst :, ,$(1)))
CHECK_FILES	:= $(filter-out $(foreach e,$(CHECKPATCH_IGNORE),$(call cp_file,$(e))),\
		   $(wildcard $(SRC)/*.c $(SRC)/*.h))
CHECKPATCH	= perl $(CPDIR)/checkpatch.pl --no-tree --strict --summary-file \
		  --show-types -f

.PHONY: all modules clean checkpatch

all: modules

# The version is the headers' directory name without "linux-headers-",
# which is also `uname -r` of that kernel and the suffix of its vmlinuz.
# A module built in a subdirectory is removed from build/kernel/<kver>/
# first, so a failed build leaves no stale copy there.
modules:
	@set -e; \
	if [ -z "$(strip $(KDIRS))" ]; then \
		echo "$(NAME): no kernel headers in /usr/src/linux-headers-*-amd64; install linux-headers-amd64 or pass KDIR=" >&2; \
		exit 1; \
	fi; \
	for k in $(KDIRS); do \
		if [ ! -f "$$k/Makefile" ]; then \
			echo "$(NAME): $$k is not a kernel build directory" >&2; \
			exit 1; \
		fi; \
		v=$$(basename "$$k"); v=$${v#linux-headers-}; \
		d="$(KMOD_OUTDIR)"; \
		mkdir -p "$$d"; \
		find "$$d" -maxdepth 1 -type l -delete; \
		for f in $(SOURCES); do ln -s "$(SRC)/$$f" "$$d/$$f"; done; \
		echo "  KMOD    $(OUT)/$$v/$(NAME).ko"; \
		$(if $(KMOD_SUBDIR),rm -f "$(OUT)/$$v/$(NAME).ko";) \
		$(MAKE) --no-print-directory -C "$$k" M="$$d" \
			$(KMOD_KBUILD_ARGS) modules; \
		$(if $(KMOD_SUBDIR),cp "$$d/$(NAME).ko" "$(OUT)/$$v/$(NAME).ko";) \
	done

$(CPDIR)/checkpatch.pl:
	@mkdir -p $(CPDIR)
	@if [ ! -r "$(LINUX_SOURCE)" ]; then \
		echo "$(NAME): $(LINUX_SOURCE) missing; install linux-source-6.1" >&2; \
		exit 1; \
	fi
	tar -xJf $(LINUX_SOURCE) -C $(CPDIR) --strip-components=2 \
		linux-source-6.1/scripts/checkpatch.pl \
		linux-source-6.1/scripts/spelling.txt \
		linux-source-6.1/scripts/const_structs.checkpatch

# Every file is checked even when one fails; the exit status says whether
# any did.
checkpatch: $(CPDIR)/checkpatch.pl
	@rc=0; \
	$(CHECKPATCH) $(CHECK_FILES) || rc=1; \
	$(foreach e,$(CHECKPATCH_IGNORE),\
	$(CHECKPATCH) --ignore $(call cp_types,$(e)) $(call cp_file,$(e)) || rc=1;) \
	exit $$rc

# A module built in build/kernel/<kver>/ itself shares that directory with
# the others (their copies and subdirectories): cleaning it removes all of
# build/kernel. One built in a subdirectory removes only its own files.
clean:
	rm -rf $(if $(KMOD_SUBDIR),$(OUT)/*/$(KMOD_SUBDIR) $(OUT)/*/$(NAME).ko,$(OUT))
