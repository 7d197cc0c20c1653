#!/usr/bin/env bash
# Stage 08b: the geometry (landmark) stream on the corpus. dlib landmarks of every clip (cached
# in WORK/geometry/), per-AU F1 on the test subjects of the FACS rules and of a classifier
# learned on the train subjects (printed, WORK/geometry/report.json), the val/test scores beside
# the CNN streams' (WORK/scores/<config>/geometry_*.npz: `facs evaluate` adds the row, `facs fuse
# --streams spatial,flow,geometry` can fuse it) and models/<profile>-<config>/geometry/.
# About 3 CPU-minutes on the embedded corpus (37k frames), once; later runs reuse the landmarks.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
for config in ${CONFIGS:-faithful best}; do
  facs geometry --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --models models --workers "${WORKERS:-2}"
done
