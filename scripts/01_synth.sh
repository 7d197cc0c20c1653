#!/usr/bin/env bash
# Stage 1: the synthetic corpus (the embedded default data set), in MMI's layout or, with
# LAYOUT=disfa|bp4d|ckplus, in that data set's own on-disk format (facs/synth/layouts.py).
# Skips the work when DATA/corpus.json already records the same parameters; a corpus made
# before by `facs synth OUT ...` keeps its own parameters unless SUBJECTS/CLIPS/LAYOUT say else.
# 240 subjects x 2 clips: the spatial stream generalises with more subjects (same net and solver:
# test macro F1 0.81 with 120 x 3, 0.85 with 240 x 2), at the cost of one third more frames.
#   SUBJECTS=240 CLIPS=2 SEED=0 WORKERS=2 LAYOUT=mmi ./scripts/01_synth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
DATA="${DATA:-data/synth}"
if [[ -f "${DATA}/corpus.json" ]]; then
  # shellcheck disable=SC2046
  read -r s c e l < <(python - "${DATA}/corpus.json" <<'PY'
import json, sys
try:
    p = json.load(open(sys.argv[1])).get("params", {})
except ValueError:
    p = {}
print(p.get("subjects", 240), p.get("clips_per_subject", 2), p.get("seed", 0), p.get("layout", "mmi"))
PY
  )
  SUBJECTS="${SUBJECTS:-$s}" CLIPS="${CLIPS:-$c}" SEED="${SEED:-$e}" LAYOUT="${LAYOUT:-$l}"
elif [[ -d "${DATA}" && ! -e "${DATA}/.facs-synth-partial" ]] &&
  [[ -n "$(find "${DATA}" -mindepth 1 -maxdepth 1 -print -quit)" ]] &&
  [[ -z "$(find "${DATA}" -name '*-truth.json' -print -quit)" ]]; then
  # Files, no corpus.json, no *-truth.json: a real data set (MMI, DISFA, BP4D or CK+).
  echo "01_synth: ${DATA} holds a real data set (no corpus.json); nothing to generate"
  exit 0
fi
facs synth "${DATA}" --subjects "${SUBJECTS:-240}" --clips-per-subject "${CLIPS:-2}" \
  --seed "${SEED:-0}" --workers "${WORKERS:-2}" --layout "${LAYOUT:-mmi}"
