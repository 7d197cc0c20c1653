#!/usr/bin/env bash
# Stage 07: train (ii) the one-vs-all spatial nets, one per label present in training, for each configuration in CONFIGS, then score the val and test LMDBs.
# The nets, as Caffe's examples keep them (edit these; profile train.onevsall may point elsewhere):
#   prototxt/${PROFILE}/onevsall_train_val.prototxt   net with Data layers (LMDBs: WORK/lmdb/<config>/)
#   prototxt/${PROFILE}/onevsall_solver.prototxt      solver
#   prototxt/${PROFILE}/onevsall_deploy.prototxt      net for prediction
# They are rendered with the configuration's LMDBs into models/${PROFILE}-<config>/onevsall/<code>/
# (train_val.prototxt, solver.prototxt, deploy.prototxt; checkpoints, Caffe-format log and CSV),
# trained, and the val/test scores written to WORK/scores/<config>/onevsall_{val,test}.npz.
# A configuration already trained on the same LMDBs and prototxts is skipped.
#   CONFIGS="faithful best" PROFILE=quick WORK=work/quick ./scripts/07_train_onevsall.sh
set -euo pipefail
source "$(dirname "$0")/_env.sh"
echo "07: nets prototxt/${PROFILE}/onevsall_{train_val,solver,deploy}.prototxt"
for config in ${CONFIGS:-faithful best}; do
  facs train-stream --profile "${PROFILE}" --work "${WORK}" --config "${config}" \
    --stream onevsall --device "${DEVICE:-cpu}"
done
