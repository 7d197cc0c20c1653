#!/usr/bin/env bash
# Stage 05: bootstrapping, per-channel means and Caffe LMDB pairs per config/part/stream -> WORK/lmdb/
#   WORK=work/quick PROFILE=quick WORKERS=2 ./scripts/05_lmdb.sh
# Work already done (same settings, same inputs) is skipped; only missing or stale items are redone.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
# DATA is not needed here: the stage reads WORK only.
# LABEL_MODE (span|markers), when set, overrides the profile's lmdb.label_mode (as 02_index.sh).
facs lmdb --profile "${PROFILE}" --work "${WORK}" --workers "${WORKERS:-2}" \
  ${LABEL_MODE:+--label-mode "${LABEL_MODE}"}
