#!/usr/bin/env bash
# Stage 10: metrics of (i)-(iv) on the test subjects, fixed 0.5 and calibrated thresholds side
# by side, the frequency baseline, figures (the report's Fig. 1, 5, 6, 7 and per-label F1) and
# the table WORK/report/table.md; the metrics also go into each model.json.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
args=()
for config in ${CONFIGS:-faithful best}; do args+=(--config "${config}"); done
facs evaluate --profile "${PROFILE}" --work "${WORK}" "${args[@]}"
