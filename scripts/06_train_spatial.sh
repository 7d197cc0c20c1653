#!/usr/bin/env bash
# Stage 06: train (i) the AN-Finetune spatial multi-label net, for each configuration in CONFIGS, then score the val and test
# LMDBs. Renders prototxt/${PROFILE}/spatial_*.prototxt with WORK's LMDBs into
# models/${PROFILE}-<config>/spatial/ (checkpoints, Caffe-format log and CSV there) and writes
# WORK/scores/<config>/spatial_{val,test}.npz. Skips a configuration already trained on the
# same LMDBs and prototxts.
#   CONFIGS="faithful best" PROFILE=quick WORK=work/quick ./scripts/06_train_spatial.sh
set -euo pipefail
source "$(dirname "$0")/_env.sh"
for config in ${CONFIGS:-faithful best}; do
  facs train-stream --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --stream spatial --device "${DEVICE:-cpu}"
done
