"""The papers' table of a protocol run (`facs kfold aggregate` of folds made with
`facs split --protocol NAME`): F1 (%) per AU at threshold 0.5, averaged over the folds, and the
mean over the protocol's AUs, one row per (configuration, stream), the published anchors below
with a line saying where they come from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facs.fileio import read_json

ROWS = ("fused", "spatial", "flow", "onevsall", "average", "geometry")


def fold_f1(works: list[Path]) -> dict[tuple[str, str], list[dict[str, float | None]]]:
    """(config, stream) -> per fold, {AU: F1 at 0.5 or None where the fold's test has none}."""
    out: dict[tuple[str, str], list[dict]] = {}
    for wk in works:
        for f in sorted((wk / "report").glob("*/metrics.json")):
            m = read_json(f, "metrics")
            for stream, entry in m["streams"].items():
                per = entry["fixed"]["per_label"]
                out.setdefault((m["config"], stream), []).append(
                    {c: (v["f1"] if v.get("support") else None) for c, v in per.items()}
                )
    return out


def protocol_table(works: list[Path], protocol: dict, synthetic: bool) -> tuple[str, dict]:
    aus = list(protocol["aus"])
    folds = fold_f1(works)
    result: dict = {"protocol": protocol["name"], "aus": aus, "folds": len(works), "rows": {}}
    head = "| method | " + " | ".join(f"AU{a}" for a in aus) + " | Avg. |"
    lines = [f"{protocol['title']}: {protocol['metric']}.", "", head, "|" + "---|" * (len(aus) + 2)]
    order = sorted(folds, key=lambda k: (k[0], ROWS.index(k[1]) if k[1] in ROWS else 99, k[1]))
    for config, stream in order:
        per_fold = folds[(config, stream)]
        means = {}
        for a in aus:
            vals = [f[a] for f in per_fold if f.get(a) is not None]
            means[a] = float(np.mean(vals)) * 100 if vals else None
        got = [v for v in means.values() if v is not None]
        avg = float(np.mean(got)) if got else None
        result["rows"][f"{config}/{stream}"] = {
            "f1": {a: None if v is None else round(v, 2) for a, v in means.items()},
            "avg": None if avg is None else round(avg, 2),
            "folds": len(per_fold),
        }
        cells = ["–" if means[a] is None else f"{means[a]:.1f}" for a in aus]
        avg_cell = "–" if avg is None else f"{avg:.1f}"
        lines.append(f"| facs {config} {stream} | " + " | ".join(cells) + f" | {avg_cell} |")
    for name, value in protocol["anchors"].items():
        lines.append(f"| {name} (published) | " + " | ".join("–" for _ in aus) + f" | {value} |")
    lines += ["", f"Anchors: {protocol['anchor_note']}", f"Folds: {protocol['fold_note']}",
              f"Source of the folds: {protocol['source']}"]  # fmt: skip
    if synthetic:
        lines.append(
            "This run is on facs' drawn corpus written in the data set's layout: it checks that "
            "the protocol runs end to end; its numbers say nothing about real faces and are not "
            "comparable with the anchors."
        )
    result["anchors"] = dict(protocol["anchors"])
    return "\n".join(lines) + "\n", result
