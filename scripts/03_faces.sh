#!/usr/bin/env bash
# Stage 03: detect, crop and mask the face of every clip -> WORK/faces/
#   DATA=data/synth WORK=work/quick PROFILE=quick WORKERS=2 ./scripts/03_faces.sh
# Work already done (same settings, same inputs) is skipped; only missing or stale items are redone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
DATA="${DATA:-data/synth}"
PROFILE="${PROFILE:-quick}"
WORK="${WORK:-work/${PROFILE}}"
facs faces --profile "${PROFILE}" --work "${WORK}" --data "${DATA}" --workers "${WORKERS:-2}"
