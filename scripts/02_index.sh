#!/usr/bin/env bash
# Stage 2: index the corpus (clips, subjects, per-frame labels) and split it by subject.
#   DATA=data/mmi PROFILE=paper LABEL_MODE=markers ./scripts/02_index.sh   # WORK=work/paper
# The layout (MMI, DISFA, BP4D, CK+) is detected; PROTOCOL=bp4d|disfa makes the folds the
# published subject-exclusive 3 folds (scripts/kfold.sh then runs the literature's protocol).
# Skips each step whose output is newer than its inputs.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
DATA="${DATA:-data/synth}"
LABEL_MODE="${LABEL_MODE:-span}"
SEED="${SEED:-0}"
FOLDS="${FOLDS:-3}"
INDEX="${WORK}/index.json"
SPLIT="${WORK}/split.json"
mkdir -p "${WORK}"

sessions="${DATA}/Sessions"
[[ -d "${sessions}" ]] || sessions="${DATA}"  # let facs index report the missing folder
# Stale when: no index, a different label mode, or any file/folder of the corpus is newer.
if [[ -f "${INDEX}" ]] && grep -q "\"label_mode\": \"${LABEL_MODE}\"" "${INDEX}" \
  && [[ -z "$(find "${sessions}" -newer "${INDEX}" -print -quit 2>/dev/null)" ]]; then
  echo "02_index: ${INDEX} is up to date, skipped"
else
  facs index "${DATA}" -o "${INDEX}" --mode "${LABEL_MODE}"
fi

PROTOCOL="${PROTOCOL:-}"
if [[ -f "${SPLIT}" && "${SPLIT}" -nt "${INDEX}" ]] \
  && grep -q "\"seed\": ${SEED}," "${SPLIT}" \
  && { [[ -z "${PROTOCOL}" ]] && ! grep -q '"protocol"' "${SPLIT}" \
       || grep -q "\"protocol\": \"${PROTOCOL}\"" "${SPLIT}"; }; then
  echo "02_index: ${SPLIT} is up to date, skipped"
else
  facs split "${INDEX}" -o "${SPLIT}" --seed "${SEED}" --folds "${FOLDS}" \
    ${PROTOCOL:+--protocol "${PROTOCOL}"}
fi
