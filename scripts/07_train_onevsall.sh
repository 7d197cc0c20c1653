#!/usr/bin/env bash
# Stage 07: train (ii) the one-vs-all spatial nets, one per label present in training, for each configuration in CONFIGS, then score the val and test
# LMDBs. Renders prototxt/${PROFILE}/onevsall_*.prototxt with WORK's LMDBs into
# models/${PROFILE}-<config>/onevsall/ (checkpoints, Caffe-format log and CSV there) and writes
# WORK/scores/<config>/onevsall_{val,test}.npz. Skips a configuration already trained on the
# same LMDBs and prototxts.
#   CONFIGS="faithful best" PROFILE=quick WORK=work/quick ./scripts/07_train_onevsall.sh
set -euo pipefail
source "$(dirname "$0")/_env.sh"
for config in ${CONFIGS:-faithful best}; do
  facs train-stream --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --stream onevsall --device "${DEVICE:-cpu}"
done
