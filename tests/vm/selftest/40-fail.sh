#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Rig self-test: a script that fails without saying why; /init reports it.
exit 3
