#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Rig self-test (run by 'check-vm --selftest' only): crash the kernel; the
# rig must report the panic.
echo c >/proc/sysrq-trigger
