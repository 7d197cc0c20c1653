"""`facs evaluate`: metrics of every configuration on the test subjects, as JSON, CSV and figures.

Reads the scores of `facs test-net` / `facs fuse` from `WORK/scores/<config>/`:
(i) AN-Finetune `spatial`, (ii) `onevsall`, (iii) `flow`, (iv) `fused`, and `geometry` where the
landmark stream wrote scores. For each: the report's fixed threshold 0.5 and per-label thresholds
calibrated on the validation subjects, side by side, plus a frequency baseline (each label's
training prevalence). Writes to `WORK/report/<config>/`:

    metrics.json   summary.csv   per_label.csv
    fig1_label_distribution.png  fig5_precision.png  fig6_recall.png  fig7_summary.png  f1.png

and `WORK/report/table.md`, the summary table of every configuration evaluated so far.

    facs evaluate --work work/quick --config best [--config faithful]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from facs.errors import FacsError
from facs.metrics import SUMMARY_KEYS, evaluate_scores, frequency_baseline
from facs.thresholds import calibrate

STREAMS = ("spatial", "onevsall", "flow", "fused", "geometry")
# table rows: the streams, with the plain average of spatial and flow beside the chosen fusion
ROWS = ("spatial", "onevsall", "flow", "fused", "average", "geometry")
TITLES = {
    "spatial": "(i) AN-Finetune",
    "onevsall": "(ii) One-vs-all",
    "flow": "(iii) Flow net",
    "fused": "(iv) Fusion",
    "average": "(iv) Fusion by plain averaging",
    "geometry": "Geometry (landmarks)",
    "baseline": "Frequency baseline",
}


def align(scores: dict, labels: list[str]) -> dict:
    """Reorder/extend a scores dict to `labels` (one-vs-all covers only labels seen in training:
    a missing label scores 0)."""
    names = list(scores["label_names"])
    if names == labels:
        return scores
    probs = np.zeros((len(scores["probs"]), len(labels)), np.float32)
    for j, code in enumerate(labels):
        if code in names:
            probs[:, j] = scores["probs"][:, names.index(code)]
    return {**scores, "probs": probs, "label_names": labels}


def train_prevalence(work: Path, config: str, labels: list[str]) -> np.ndarray | None:
    """Each label's frequency in the training records (train_prevalence.json from training)."""
    f = work / "scores" / config / "train_prevalence.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    return np.array([float(d["prevalence"].get(c, 0.0)) for c in labels])


def evaluate_config(work: Path, config: str, threshold_method: str = "f1") -> dict:
    """Metrics of every stream whose test scores exist under WORK/scores/<config>."""
    folder = work / "scores" / config
    present = [s for s in STREAMS if (folder / f"{s}_test.npz").is_file()]
    if not present:
        raise FacsError(f"{folder}: no *_test.npz scores (run the training scripts first)")
    from facs.scores import load_scores

    ref = load_scores(folder / f"{present[0]}_test.npz")
    labels = list(ref["label_names"])
    y = ref["labels"]
    result: dict = {"config": config, "labels": labels, "frames": int(len(y)), "streams": {}}
    ref_val = folder / f"{present[0]}_val.npz"
    y_val = load_scores(ref_val)["labels"] if ref_val.is_file() else None
    for s in present:
        test = align(load_scores(folder / f"{s}_test.npz"), labels)
        if list(test["keys"]) != list(ref["keys"]):
            raise FacsError(f"{folder / (s + '_test.npz')}: frames differ from {present[0]}'s")
        entry = {"fixed": evaluate_scores(y, test["probs"], labels, 0.5)}
        vf = folder / f"{s}_val.npz"
        if vf.is_file() and y_val is not None:
            val = align(load_scores(vf), labels)
            t = calibrate(y_val, val["probs"], threshold_method)
            entry["calibrated"] = evaluate_scores(y, test["probs"], labels, t)
            entry["calibrated"]["method"] = threshold_method
        result["streams"][s] = entry
    if "spatial" in present and "flow" in present:
        # The plain average of the two streams, beside the fusion validation chose: the report
        # does not name its fusion rule, and averaging is the two-stream paper's baseline.
        entry = _average_entry(folder, labels, y, y_val, threshold_method)
        if entry is not None:
            result["streams"]["average"] = entry
    if (folder / "fusion.json").is_file():
        spec = json.loads((folder / "fusion.json").read_text())
        result["fusion"] = {"method": spec.get("method"), "val_f1_macro": spec.get("val_f1_macro")}
    prev = train_prevalence(work, config, labels)
    if prev is not None:
        result["baseline"] = {
            "fixed": evaluate_scores(y, frequency_baseline(prev[None], len(y)), labels, 0.5)
        }
    result["test_support"] = {c: int(v) for c, v in zip(labels, y.sum(0), strict=True)}
    if prev is not None:
        result["train_prevalence"] = {
            c: round(float(v), 6) for c, v in zip(labels, prev, strict=True)
        }
    return result


def _average_entry(folder: Path, labels, y, y_val, threshold_method: str) -> dict | None:
    from facs.scores import load_scores

    parts = {}
    for part in ("test", "val"):
        files = [folder / f"{s}_{part}.npz" for s in ("spatial", "flow")]
        if not all(f.is_file() for f in files):
            return None
        sc = [align(load_scores(f), labels) for f in files]
        if list(sc[0]["keys"]) != list(sc[1]["keys"]):
            return None
        parts[part] = (sc[0]["probs"] + sc[1]["probs"]) / 2.0
    entry = {"fixed": evaluate_scores(y, parts["test"], labels, 0.5)}
    if y_val is not None:
        t = calibrate(y_val, parts["val"], threshold_method)
        entry["calibrated"] = evaluate_scores(y, parts["test"], labels, t)
        entry["calibrated"]["method"] = threshold_method
    return entry


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
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "stream", "thresholds", *SUMMARY_KEYS])
        for s, mode, m in _rows(result):
            w.writerow([result["config"], s, mode, *[m["summary"][k] for k in SUMMARY_KEYS]])
    with open(out / "per_label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "config",
                "stream",
                "thresholds",
                "label",
                "precision",
                "recall",
                "f1",
                "roc_auc",
                "support",
                "predicted",
                "threshold",
            ]
        )
        for s, mode, m in _rows(result):
            for code, v in m["per_label"].items():
                w.writerow(
                    [
                        result["config"],
                        s,
                        mode,
                        code,
                        v["precision"],
                        v["recall"],
                        v["f1"],
                        v["roc_auc"],
                        v["support"],
                        v["predicted"],
                        v["threshold"],
                    ]
                )


def _bars(ax, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(series.items()):
        ax.bar(x + (i - (n - 1) / 2) * width, [v or 0.0 for v in vals], width, label=name)
    rot = 45 if len(groups) > 8 else 0
    ax.set_xticks(x, groups, rotation=rot, ha="right" if rot else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.3)  # headroom for the legend above the bars
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(n, 3), loc="upper center")


def write_figures(result: dict, out: Path, mode: str = "fixed") -> list[Path]:
    """The report's Figures 1, 5, 6, 7 and a per-label F1 figure, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = result["labels"]
    codes = [f"AU{c}" for c in labels]
    cnn = [s for s in ("spatial", "onevsall", "flow", "fused") if s in result["streams"]]
    extra = [s for s in ("geometry",) if s in result["streams"]]
    paths = []
    tag = f"{result['config']}, threshold {'0.5' if mode == 'fixed' else 'calibrated'}"

    def per_label(key: str, name: str, title: str) -> None:
        fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels)), 4))
        series = {}
        for s in cnn + extra:
            m = result["streams"][s].get(mode) or result["streams"][s]["fixed"]
            series[TITLES[s]] = [m["per_label"][c][key] for c in labels]
        _bars(ax, codes, series, key)
        ax.set_title(f"{title} ({tag})")
        fig.tight_layout()
        p = out / name
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    per_label("precision", "fig5_precision.png", "Fig. 5: precision per label")
    per_label("recall", "fig6_recall.png", "Fig. 6: recall per label")
    per_label("f1", "f1.png", "F1 per label")

    fig, ax = plt.subplots(figsize=(8, 4))
    keys = [
        ("precision_macro", "avg. precision"),
        ("recall_macro", "avg. recall"),
        ("hamming_score", "multi-label accuracy"),
        ("f1_macro", "macro F1"),
    ]
    names = [s for s in cnn + extra] + (["baseline"] if "baseline" in result else [])
    series = {}
    for s in names:
        e = result["baseline"] if s == "baseline" else result["streams"][s]
        m = e.get(mode) or e["fixed"]
        series[TITLES[s]] = [m["summary"][k] for k, _ in keys]
    # One group per measure, one bar per configuration (the report's Fig. 7 layout).
    _bars(ax, [k[1] for k in keys], series, "score")
    ax.set_title(f"Fig. 7: summary per configuration ({tag})")
    fig.tight_layout()
    p = out / "fig7_summary.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels)), 4))
    sup = [result["test_support"][c] for c in labels]
    if "train_prevalence" in result:
        prev = [result["train_prevalence"][c] for c in labels]
        ax.bar(np.arange(len(labels)) - 0.2, prev, 0.4, label="train (fraction of frames)")
        ax.bar(
            np.arange(len(labels)) + 0.2,
            np.array(sup) / max(result["frames"], 1),
            0.4,
            label="test (fraction of frames)",
        )
        ax.legend(fontsize=8)
    else:
        ax.bar(np.arange(len(labels)), np.array(sup) / max(result["frames"], 1))
    ax.set_xticks(np.arange(len(labels)), codes, rotation=45, ha="right")
    ax.set_ylabel("fraction of frames with the label")
    ax.set_title(f"Fig. 1: distribution of the FACS labels ({result['config']})")
    fig.tight_layout()
    p = out / "fig1_label_distribution.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


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


def model_metrics(result: dict, thresholds: dict[str, float] | None) -> dict:
    """What model.json keeps: each stream's test summary at 0.5 and calibrated."""
    out = {"test_frames": result["frames"], "config": result["config"]}
    for s, entry in result["streams"].items():
        out[s] = {mode: m["summary"] for mode, m in entry.items()}
    if "baseline" in result:
        out["baseline"] = result["baseline"]["fixed"]["summary"]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from facs.profile import add_common_arguments

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


def run(args: argparse.Namespace) -> int:
    from facs.model_folder import add_metrics
    from facs.profile import default_work, load_profile

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
        add_metrics(args.models / f"{profile['name']}-{config}", model_metrics(r, None))
        print(f"evaluate {config}: figures {', '.join(str(p) for p in figs)}")
    # The table gathers every configuration evaluated so far, not only this call's.
    every = [json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))]
    md = table_markdown(every)
    (out / "table.md").write_text(md)
    print(md)
    print(
        f"evaluate: metrics table {out / 'table.md'}; per configuration metrics.json, "
        f"summary.csv, per_label.csv and figures under {out}/<config>/"
    )
    return 0
