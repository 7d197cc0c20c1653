#!/usr/bin/env bash
# Stage 04: Farneback flow between face crops, every stride the profile's LMDB configs use -> WORK/flow/s<k>/
#   WORK=work/quick PROFILE=quick WORKERS=2 ./scripts/04_flow.sh
# Work already done (same settings, same inputs) is skipped; only missing or stale items are redone.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
# DATA is not needed here: the stage reads WORK only.
facs flow --profile "${PROFILE}" --work "${WORK}" --workers "${WORKERS:-2}"
