"""Subject-exclusive k-fold evaluation: `facs kfold prepare` and `facs kfold aggregate`.

`prepare` makes one work directory per fold of WORK/split.json's `folds` (facs split --folds K):
fold k's subjects are the test part, a fifth of the others (from the next fold on) the
validation part, the rest train. The per-clip stages (faces, flow) are shared through symlinks,
so each fold only builds its LMDBs and trains. `aggregate` reads every fold's report and writes
mean +- std per configuration and stream. scripts/kfold.sh runs the whole loop.

    facs kfold prepare --work work/quick            # -> work/quick-fold0 ... -fold{K-1}
    facs kfold aggregate work/quick-fold*           # -> work/quick-kfold/table.md, kfold.json

With folds from `facs split --protocol bp4d|disfa` (the published subject-exclusive folds),
`aggregate` also writes protocol.md/.json: F1 per AU in the papers' form with their anchors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facs.datasets.protocols import load_protocol
from facs.datasets.split import load_split
from facs.errors import FacsError
from facs.evaluation.protocol_table import protocol_table
from facs.fileio import copy_file, read_json, write_json, write_text
from facs.synth.corpus import is_synthetic

SHARED = ("faces", "flow", "geometry")
KEYS = ("precision_macro", "recall_macro", "f1_macro", "f1_micro", "roc_auc_macro",
        "hamming_score", "hamming_loss")  # fmt: skip


def prepare(work: Path) -> list[Path]:
    """One work directory per fold, beside WORK; returns them."""
    split = load_split(work / "split.json")
    folds = split.get("folds") or []
    if len(folds) < 3:
        raise FacsError(f"{work / 'split.json'}: needs >= 3 folds (facs split --folds K)")
    out = []
    for k, fold in enumerate(folds):
        wk = work.with_name(f"{work.name}-fold{k}")
        wk.mkdir(parents=True, exist_ok=True)
        copy_file(work / "index.json", wk / "index.json")
        # Validation: a fifth of the other subjects, taken from the next fold onward.
        others = [s for i in range(1, len(folds)) for s in folds[(k + i) % len(folds)]]
        n_val = max(2, round(0.2 * len(others)))
        val, train = others[:n_val], others[n_val:]
        fold_split = {**split, "parts": {"train": train, "val": val, "test": list(fold)},
                      "fold": k}  # fmt: skip
        write_json(wk / "split.json", fold_split)
        for name in SHARED:
            link, target = wk / name, (work / name).resolve()
            if target.exists() and not link.exists():
                link.symlink_to(target, target_is_directory=True)
        out.append(wk)
    return out


def aggregate(works: list[Path], out: Path) -> dict:
    """Mean and std over folds of each (configuration, stream) summary at threshold 0.5."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for wk in works:
        for f in sorted((wk / "report").glob("*/metrics.json")):
            m = read_json(f, "metrics")
            for s, entry in m["streams"].items():
                rows.setdefault((m["config"], s), []).append(entry["fixed"]["summary"])
            if "baseline" in m:
                rows.setdefault((m["config"], "baseline"), []).append(
                    m["baseline"]["fixed"]["summary"]
                )
    if not rows:
        raise FacsError("kfold aggregate: no WORK/report/<config>/metrics.json in the folds given")
    result = {}
    lines = [
        "| config | stream | folds | " + " | ".join(KEYS) + " |",
        "|" + "---|" * (3 + len(KEYS)),
    ]
    for (config, stream), summaries in sorted(rows.items()):
        stats = {}
        cells = []
        for k in KEYS:
            v = np.array([s[k] for s in summaries if s.get(k) is not None], dtype=float)
            mean, std = (float(v.mean()), float(v.std())) if len(v) else (None, None)
            stats[k] = {"mean": None if mean is None else round(mean, 6),
                        "std": None if std is None else round(std, 6)}  # fmt: skip
            cells.append("–" if mean is None else f"{mean:.3f} ± {std:.3f}")
        result[f"{config}/{stream}"] = {"folds": len(summaries), **stats}
        lines.append(f"| {config} | {stream} | {len(summaries)} | " + " | ".join(cells) + " |")
    write_json(out / "kfold.json", result, indent=1, sort_keys=True)
    write_text(out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    _protocol(works, out)
    return result


def _protocol(works: list[Path], out: Path) -> None:
    """With folds from `facs split --protocol`, the papers' table beside the summary one."""
    split = load_split(works[0] / "split.json")
    if not split.get("protocol"):
        return
    index = read_json(works[0] / "index.json", "index file")
    text, result = protocol_table(
        works, load_protocol(split["protocol"]), is_synthetic(Path(index["root"]))
    )
    write_json(out / "protocol.json", result, indent=1, sort_keys=True)
    write_text(out / "protocol.md", text)
    print(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("prepare", "aggregate"))
    parser.add_argument("works", nargs="*", type=Path, help="aggregate: the fold directories")
    parser.add_argument("--work", type=Path, default=Path("work/quick"), help="prepare: WORK")
    parser.add_argument("--out", type=Path, help="aggregate: output folder")


def run(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        for wk in prepare(args.work):
            print(wk)
        return 0
    if not args.works:
        raise FacsError("kfold aggregate: give the fold work directories")
    out = args.out or args.works[0].with_name(args.works[0].name.rsplit("-fold", 1)[0] + "-kfold")
    aggregate(args.works, out)
    print(f"kfold: mean +- std over {len(args.works)} folds -> {out / 'table.md'}")
    return 0
