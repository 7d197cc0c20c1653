"""The model folder that `facs analyze` and the web demo load: models/<name>/model.json.

Written by the fusion stage from what the training stages left in the folder (each stream's
`stream.json`), the fusion spec, and the thresholds chosen on the validation subjects; the
evaluation stage adds the test metrics. Paths inside are relative to the folder.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from facs.errors import FacsError


def _prefixed(entry: dict, prefix: str) -> dict:
    out = dict(entry)
    for key in ("deploy", "weights", "mean", "classifier"):
        if isinstance(out.get(key), str):
            out[key] = f"{prefix}/{out[key]}"
    return out


def stream_entries(folder: Path) -> tuple[dict, dict | None]:
    """(the CNN streams predict.py runs, the one-vs-all nets or None) found in `folder`."""
    streams = {}
    # geometry/stream.json is written by `facs geometry --models` (scripts/08b_geometry.sh).
    for name in ("spatial", "flow", "geometry"):
        f = folder / name / "stream.json"
        if f.is_file():
            streams[name] = _prefixed(json.loads(f.read_text()), name)
    ova = None
    f = folder / "onevsall" / "stream.json"
    if f.is_file():
        ova = json.loads(f.read_text())
        ova["nets"] = {c: _prefixed(n, "onevsall") for c, n in ova["nets"].items()}
        if ova.get("mean"):
            ova["mean"] = f"onevsall/{ova['mean']}"
    return streams, ova


def write_model_json(
    folder: Path,
    *,
    profile: dict,
    config: str,
    work: Path,
    labels: list[str],
    fusion: dict,
    thresholds: dict[str, float],
    threshold_choice: dict,
) -> Path:
    """Write folder/model.json (keeps the metrics an earlier evaluation stored)."""
    from facs.workdir import load_index, load_split

    streams, ova = stream_entries(folder)
    if not streams:
        raise FacsError(f"{folder}: no trained stream (spatial/, flow/) to put in model.json")
    fused = list(fusion.get("streams") or [])
    if fused:
        # the model runs what its fusion was fitted on (a stream folder left from an earlier
        # run with other streams is not part of it)
        missing = [s for s in fused if s not in streams]
        if missing:
            raise FacsError(f"{folder}: the fusion needs stream(s) {missing} that are not there")
        streams = {name: entry for name, entry in streams.items() if name in fused}
    index = load_index(work)
    split = load_split(work)
    old = folder / "model.json"
    metrics = json.loads(old.read_text()).get("metrics", {}) if old.is_file() else {}
    spec = {
        "name": folder.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trained_on": {
            "data": str(index.get("root", "")),
            "profile": profile.get("name"),
            "config": config,
            "label_mode": index.get("label_mode"),
            "train_subjects": list(split["parts"]["train"]),
            "val_subjects": list(split["parts"]["val"]),
            "test_subjects": list(split["parts"]["test"]),
        },
        "labels": labels,
        "streams": streams,
        "fusion": fusion,
        "thresholds": thresholds,
        "threshold_choice": threshold_choice,
        "metrics": metrics,
    }
    if ova is not None:
        spec["onevsall"] = ova
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder / "model.json"


def add_metrics(folder: Path, metrics: dict) -> None:
    """Store the evaluation's test metrics in an existing model.json."""
    f = folder / "model.json"
    if not f.is_file():
        return
    spec = json.loads(f.read_text())
    spec["metrics"] = metrics
    f.write_text(json.dumps(spec, indent=1) + "\n")
