#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test: 75-xmsnap on a qcow-backed tapdev (results xmsnap-*-qcow; see
# 75-xmsnap.sh).  A script of its own for the per-script time limit.
XMSNAP_FMT=qcow
# shellcheck source=tests/vm/guest/75-xmsnap.sh
. /tests/75-xmsnap.sh
