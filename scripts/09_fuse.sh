#!/usr/bin/env bash
# Stage 09: (iv) fusion of the spatial and flow scores, for each configuration in CONFIGS. The
# method (average, weighted, logreg, svm; FUSION=auto picks by validation) and the thresholds
# (THRESHOLDS=auto: fixed 0.5 or calibrated, by cross-validation over validation subjects) are
# saved with the model: models/${PROFILE}-<config>/model.json.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
for config in ${CONFIGS:-faithful best}; do
  facs fuse --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    ${FUSION:+--method "${FUSION}"} ${THRESHOLDS:+--thresholds "${THRESHOLDS}"}
done
