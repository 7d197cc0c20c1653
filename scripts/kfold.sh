#!/usr/bin/env bash
# Subject-exclusive k-fold evaluation (mean +- std over folds) of the stages 05-10, reusing the
# face crops and flows of WORK. Needs WORK/split.json with folds (02_index.sh: FOLDS=3).
# Each fold builds its own LMDBs and trains every stream: about K times stages 05-10 of
# run_all (see README, "Results").
#   CONFIGS=best PROFILE=quick WORK=work/quick ./scripts/kfold.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
export PROFILE="${PROFILE:-quick}"
BASE="${WORK:-work/${PROFILE}}"
export CONFIGS="${CONFIGS:-best}"
folds=()
while read -r wk; do folds+=("${wk}"); done < <(facs kfold prepare --work "${BASE}")
for wk in "${folds[@]}"; do
  echo "=== fold ${wk}"
  export WORK="${wk}"
  cfgs=(); for c in ${CONFIGS}; do cfgs+=(--config "${c}"); done
  facs lmdb --profile "${PROFILE}" --work "${wk}" --workers "${WORKERS:-2}" "${cfgs[@]}"
  for c in ${CONFIGS}; do
    for s in spatial flow onevsall; do
      facs train-stream --profile "${PROFILE}" --work "${wk}" --config "${c}" --stream "${s}" \
        --models "models/$(basename "${wk}")"
    done
    facs fuse --profile "${PROFILE}" --work "${wk}" --config "${c}" \
      --models "models/$(basename "${wk}")"
  done
  facs evaluate --profile "${PROFILE}" --work "${wk}" "${cfgs[@]}" \
    --models "models/$(basename "${wk}")"
done
facs kfold aggregate "${folds[@]}"
