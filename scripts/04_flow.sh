#!/usr/bin/env bash
# Stage 04: Farneback flow between face crops, every stride the profile's LMDB configs use -> WORK/flow/s<k>/
#   WORK=work/quick PROFILE=quick WORKERS=2 ./scripts/04_flow.sh
# Work already done (same settings, same inputs) is skipped; only missing or stale items are redone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
# DATA is not needed here: the stage reads WORK only.
PROFILE="${PROFILE:-quick}"
WORK="${WORK:-work/${PROFILE}}"
facs flow --profile "${PROFILE}" --work "${WORK}" --workers "${WORKERS:-2}"
