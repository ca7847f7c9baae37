#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Rig self-test: a script that never ends; the per-script limit (or the
# run's wall-clock limit) must catch it.
sleep 100000
