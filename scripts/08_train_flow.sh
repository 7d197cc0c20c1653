#!/usr/bin/env bash
# Stage 08: train (iii) the flow net (temporal stream) from scratch, for each configuration in CONFIGS, then score the val and test
# LMDBs. Renders prototxt/${PROFILE}/flow_*.prototxt with WORK's LMDBs into
# models/${PROFILE}-<config>/flow/ (checkpoints, Caffe-format log and CSV there) and writes
# WORK/scores/<config>/flow_{val,test}.npz. Skips a configuration already trained on the
# same LMDBs and prototxts.
#   CONFIGS="faithful best" PROFILE=quick WORK=work/quick ./scripts/08_train_flow.sh
set -euo pipefail
source "$(dirname "$0")/_env.sh"
for config in ${CONFIGS:-faithful best}; do
  facs train-stream --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --stream flow --device "${DEVICE:-cpu}"
done
