# Sourced by the numbered stage scripts: run from the repository root, in the project's venv,
# with the profile (quick: the embedded default; paper: a real MMI run) and its work directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
PROFILE="${PROFILE:-quick}"
WORK="${WORK:-work/${PROFILE}}"
