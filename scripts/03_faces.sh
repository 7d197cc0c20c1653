#!/usr/bin/env bash
# Stage 03: detect, crop and mask the face of every clip -> WORK/faces/
#   WORK=work/quick PROFILE=quick WORKERS=2 ./scripts/03_faces.sh
# Work already done (same settings, same inputs) is skipped; only missing or stale items are redone.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
# DATA is not needed here: WORK/index.json names the corpus root.
facs faces --profile "${PROFILE}" --work "${WORK}" --workers "${WORKERS:-2}"
