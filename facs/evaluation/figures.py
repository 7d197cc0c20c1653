"""The report's figures of one configuration's metrics (facs.evaluation.evaluate's result):
Fig. 1 (label distribution), Fig. 5 (precision per label), Fig. 6 (recall per label), Fig. 7
(average precision, average recall, multi-label accuracy per stream) and F1 per label, as PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facs.fileio import atomic_path  # noqa: E402

TITLES = {
    "spatial": "(i) AN-Finetune",
    "onevsall": "(ii) One-vs-all",
    "flow": "(iii) Flow net",
    "fused": "(iv) Fusion",
    "average": "(iv) Fusion by plain averaging",
    "geometry": "Geometry (landmarks)",
    "baseline": "Frequency baseline",
}


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


def _save(fig, path: Path) -> None:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_figures(result: dict, out: Path, mode: str = "fixed") -> list[Path]:
    """The report's Figures 1, 5, 6, 7 and a per-label F1 figure, as PNG files."""
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
        _save(fig, p)
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
    _save(fig, p)
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
    _save(fig, p)
    paths.append(p)
    return paths
