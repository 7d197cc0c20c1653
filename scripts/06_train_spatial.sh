#!/usr/bin/env bash
# Stage 06: train (i) the AN-Finetune spatial multi-label net, for each configuration in CONFIGS, then score the val and test LMDBs.
# The nets, as Caffe's examples keep them (edit these; profile train.spatial may point elsewhere):
#   prototxt/${PROFILE}/alexnet_finetune_train_val.prototxt   net with Data layers (LMDBs: WORK/lmdb/<config>/)
#   prototxt/${PROFILE}/alexnet_finetune_solver.prototxt      solver
#   prototxt/${PROFILE}/alexnet_finetune_deploy.prototxt      net for prediction
# They are rendered with the configuration's LMDBs into models/${PROFILE}-<config>/spatial/
# (train_val.prototxt, solver.prototxt, deploy.prototxt; checkpoints, Caffe-format log and CSV),
# trained, and the val/test scores written to WORK/scores/<config>/spatial_{val,test}.npz.
# A configuration already trained on the same LMDBs and prototxts is skipped.
#   CONFIGS="faithful best" PROFILE=quick WORK=work/quick ./scripts/06_train_spatial.sh
set -euo pipefail
source "$(dirname "$0")/_env.sh"
echo "06: nets prototxt/${PROFILE}/alexnet_finetune_{train_val,solver,deploy}.prototxt"
for config in ${CONFIGS:-faithful best}; do
  facs train-stream --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --stream spatial --device "${DEVICE:-cpu}"
done
