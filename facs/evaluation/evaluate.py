"""`facs evaluate`: metrics of every configuration on the test subjects, as JSON, CSV and figures.

Reads the scores of `facs train-stream` / `facs fuse` from `WORK/scores/<config>/`:
(i) AN-Finetune `spatial`, (ii) `onevsall`, (iii) `flow`, (iv) `fused`, and `geometry` where the
landmark stream wrote scores. For each: the report's fixed threshold 0.5 and per-label thresholds
calibrated on the validation subjects, side by side, plus a frequency baseline (each label's
training prevalence). Writes to `WORK/report/<config>/`:

    metrics.json   summary.csv   per_label.csv
    fig1_label_distribution.png  fig5_precision.png  fig6_recall.png  fig7_summary.png  f1.png

and `WORK/report/table.md`, the summary table of every configuration evaluated so far; the test
metrics also go into the configuration's model.json.

    facs evaluate --work work/quick --config best [--config faithful]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from facs.analysis.model import read_model, write_model
from facs.aus import UNKNOWN
from facs.errors import FacsError
from facs.evaluation.figures import TITLES, write_figures
from facs.evaluation.metrics import SUMMARY_KEYS, evaluate_scores, frequency_baseline
from facs.evaluation.scores import Scores, load_scores
from facs.fileio import atomic_path, read_json, write_json, write_text
from facs.preprocess.workdir import scores_dir
from facs.profile import add_common_arguments, default_work, load_profile
from facs.training.thresholds import calibrate

STREAMS = ("spatial", "onevsall", "flow", "fused", "geometry")
# table rows: the streams, with the plain average of spatial and flow beside the chosen fusion
ROWS = ("spatial", "onevsall", "flow", "fused", "average", "geometry")
PER_LABEL = ("precision", "recall", "f1", "roc_auc", "support", "predicted", "threshold")


def train_prevalence(work: Path, config: str, labels: list[str]) -> np.ndarray | None:
    """Each label's frequency in the training records (train_prevalence.json from training)."""
    f = scores_dir(work, config) / "train_prevalence.json"
    if not f.is_file():
        return None
    d = read_json(f, "training prevalence")
    return np.array([float(d["prevalence"].get(c, 0.0)) for c in labels])


def _entry(y, probs, labels, y_val, val_probs, threshold_method: str) -> dict:
    """Metrics at 0.5 and at thresholds calibrated on the validation scores (when given).
    A label a stream has no opinion on (NaN) is never predicted."""
    probs = np.nan_to_num(probs, nan=0.0)
    entry = {"fixed": evaluate_scores(y, probs, labels, 0.5)}
    if val_probs is not None and y_val is not None:
        t = calibrate(y_val, np.nan_to_num(val_probs, nan=0.0), threshold_method)
        entry["calibrated"] = evaluate_scores(y, probs, labels, t)
        entry["calibrated"]["method"] = threshold_method
    return entry


def evaluate_config(work: Path, config: str, threshold_method: str = "f1") -> dict:
    """Metrics of every stream whose test scores exist under WORK/scores/<config>."""
    folder = scores_dir(work, config)
    present = [s for s in STREAMS if (folder / f"{s}_test.npz").is_file()]
    if not present:
        raise FacsError(f"{folder}: no *_test.npz scores (run the training scripts first)")
    ref = load_scores(folder / f"{present[0]}_test.npz")
    labels, y = list(ref.label_names), ref.labels
    result: dict = {"config": config, "labels": labels, "frames": int(len(y)), "streams": {}}
    ref_val = folder / f"{present[0]}_val.npz"
    y_val = load_scores(ref_val).labels if ref_val.is_file() else None
    test: dict[str, Scores] = {}
    val: dict[str, Scores] = {}
    for s in present:
        test[s] = load_scores(folder / f"{s}_test.npz").aligned(labels)
        if test[s].keys != ref.keys:
            raise FacsError(f"{folder / (s + '_test.npz')}: frames differ from {present[0]}'s")
        if (folder / f"{s}_val.npz").is_file():
            val[s] = load_scores(folder / f"{s}_val.npz").aligned(labels)
        vp = val[s].probs if s in val else None
        result["streams"][s] = _entry(y, test[s].probs, labels, y_val, vp, threshold_method)
    pair = ("spatial", "flow")
    if all(s in test and s in val for s in pair) and val["spatial"].keys == val["flow"].keys:
        # The plain average of the two streams, beside the fusion validation chose: the report
        # does not name its fusion rule, and averaging is the two-stream paper's baseline.
        avg_test = (test["spatial"].probs + test["flow"].probs) / 2.0
        avg_val = (val["spatial"].probs + val["flow"].probs) / 2.0
        result["streams"]["average"] = _entry(y, avg_test, labels, y_val, avg_val, threshold_method)
    if (folder / "fusion.json").is_file():
        spec = read_json(folder / "fusion.json", "fusion spec")
        result["fusion"] = {"method": spec.get("method"), "val_f1_macro": spec.get("val_f1_macro")}
    prev = train_prevalence(work, config, labels)
    if prev is not None:
        result["baseline"] = {
            "fixed": evaluate_scores(y, frequency_baseline(prev[None], len(y)), labels, 0.5)
        }
    result["test_support"] = {c: int(v) for c, v in zip(labels, (y == 1).sum(0), strict=True)}
    if (y == UNKNOWN).any():  # cells the corpus did not code (BP4D's 9, CK+ between frames)
        unknown = (y == UNKNOWN).sum(0)
        result["test_unknown"] = {c: int(v) for c, v in zip(labels, unknown, strict=True)}
    if prev is not None:
        result["train_prevalence"] = {
            c: round(float(v), 6) for c, v in zip(labels, prev, strict=True)
        }
    return result


def _rows(result: dict):
    entries = dict(result["streams"])
    if "baseline" in result:
        entries["baseline"] = result["baseline"]
    # Fixed order (the report's (i)-(iv)), whatever order a JSON round trip left.
    for s in [*ROWS, "baseline"]:
        for mode in ("fixed", "calibrated"):
            if s in entries and mode in entries[s]:
                yield s, mode, entries[s][mode]


def write_tables(result: dict, out: Path) -> None:
    write_json(out / "metrics.json", result, indent=1, sort_keys=True)
    with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "stream", "thresholds", *SUMMARY_KEYS])
        for s, mode, m in _rows(result):
            w.writerow([result["config"], s, mode, *[m["summary"][k] for k in SUMMARY_KEYS]])
    with atomic_path(out / "per_label.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "stream", "thresholds", "label", *PER_LABEL])
        for s, mode, m in _rows(result):
            for code, v in m["per_label"].items():
                w.writerow([result["config"], s, mode, code, *[v[k] for k in PER_LABEL]])


def table_markdown(results: list[dict]) -> str:
    """Markdown table: configuration x stream, fixed 0.5 and calibrated thresholds."""
    head = (
        "| config | stream | thresholds | avg. precision | avg. recall | macro F1 | micro F1 "
        "| ROC-AUC | multi-label acc. | Hamming loss |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        for s, mode, m in _rows(r):
            v = m["summary"]

            def f(k, v=v):
                return "–" if v[k] is None else f"{v[k]:.3f}"

            lines.append(
                f"| {r['config']} | {TITLES.get(s, s)} | {mode} | {f('precision_macro')} | "
                f"{f('recall_macro')} | {f('f1_macro')} | {f('f1_micro')} | {f('roc_auc_macro')} "
                f"| {f('hamming_score')} | {f('hamming_loss')} |"
            )
    return "\n".join(lines) + "\n"


def model_metrics(result: dict) -> dict:
    """What model.json keeps: each stream's test summary at 0.5 and calibrated."""
    out = {"test_frames": result["frames"], "config": result["config"]}
    for s, entry in result["streams"].items():
        out[s] = {mode: m["summary"] for mode, m in entry.items()}
    if "baseline" in result:
        out["baseline"] = result["baseline"]["fixed"]["summary"]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, workers=False)
    parser.add_argument("--config", action="append", help="configuration(s) under WORK/scores/")
    parser.add_argument(
        "--thresholds",
        default="f1",
        choices=("f1", "youden"),
        help="calibration method shown beside the fixed 0.5",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="models folder: metrics go into <models>/<profile>-<config>/model.json",
    )
    parser.add_argument("--out", type=Path, help="report folder (default WORK/report)")


def add_metrics(folder: Path, metrics: dict) -> None:
    """Store the evaluation's test metrics in the configuration's model.json, if there is one."""
    if (folder / "model.json").is_file():
        model = read_model(folder)
        model.metrics = metrics
        write_model(model)


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    out = args.out or work / "report"
    configs = args.config or sorted(p.name for p in (work / "scores").glob("*") if p.is_dir())
    if not configs:
        raise FacsError(f"{work / 'scores'}: no configurations scored yet")
    for config in configs:
        r = evaluate_config(work, config, args.thresholds)
        write_tables(r, out / config)
        figs = write_figures(r, out / config)
        add_metrics(args.models / f"{profile['name']}-{config}", model_metrics(r))
        print(f"evaluate {config}: figures {', '.join(str(p) for p in figs)}")
    # The table gathers every configuration evaluated so far, not only this call's.
    every = [json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))]
    md = table_markdown(every)
    write_text(out / "table.md", md)
    print(md)
    print(
        f"evaluate: metrics table {out / 'table.md'}; per configuration metrics.json, "
        f"summary.csv, per_label.csv and figures under {out}/<config>/"
    )
    return 0
