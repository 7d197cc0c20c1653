#!/usr/bin/env bash
# Run the test suite (and the ruff lint) in the project's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
ruff check facs tests bench web
ruff format --check facs tests bench web
python -m pytest "$@"
