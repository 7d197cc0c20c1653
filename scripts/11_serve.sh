#!/usr/bin/env bash
# Stage 11: the web demo and REST API on http://127.0.0.1:9000/ (waitress; Ctrl-C stops).
#   ./scripts/11_serve.sh                         # newest model under models/, else geometry
#   MODEL=models/quick-best PORT=8080 ./scripts/11_serve.sh --workers 2 --max-seconds 20
# Extra arguments go to `facs serve` (see `facs serve --help`). Not part of run_all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-9000}"
DATA="${DATA:-data/synth}"
args=(--host "${HOST}" --port "${PORT}" --data "${DATA}")
if [[ -n "${MODEL:-}" ]]; then args+=(--model "${MODEL}"); fi
exec facs serve "${args[@]}" "$@"
