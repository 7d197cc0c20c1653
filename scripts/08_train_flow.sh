#!/usr/bin/env bash
# Stage 08: train (iii) the flow net (temporal stream) from scratch, for each configuration in CONFIGS, then score the val and test LMDBs.
# The nets, as Caffe's examples keep them (edit these; profile train.flow may point elsewhere):
#   prototxt/${PROFILE}/flownet_train_val.prototxt   net with Data layers (LMDBs: WORK/lmdb/<config>/)
#   prototxt/${PROFILE}/flownet_solver.prototxt      solver
#   prototxt/${PROFILE}/flownet_deploy.prototxt      net for prediction
# They are rendered with the configuration's LMDBs into models/${PROFILE}-<config>/flow/
# (train_val.prototxt, solver.prototxt, deploy.prototxt; checkpoints, Caffe-format log and CSV),
# trained, and the val/test scores written to WORK/scores/<config>/flow_{val,test}.npz.
# A configuration already trained on the same LMDBs and prototxts is skipped.
#   CONFIGS="faithful best" PROFILE=quick WORK=work/quick ./scripts/08_train_flow.sh
set -euo pipefail
source "$(dirname "$0")/_env.sh"
echo "08: nets prototxt/${PROFILE}/flownet_{train_val,solver,deploy}.prototxt"
for config in ${CONFIGS:-faithful best}; do
  facs train-stream --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --stream flow --device "${DEVICE:-cpu}"
done
