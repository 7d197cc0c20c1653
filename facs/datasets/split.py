"""`facs split WORK/index.json -o WORK/split.json`: train/val/test and k folds, by subject.

No subject is in two parts (the original work split frames at random, so one clip could land in
both train and test). The split is deterministic for a seed: among `--tries` seeded shuffles of
the subjects it keeps the first one that best keeps every label present in train (then in test,
then in val); folds are chosen the same way so each fold's training subjects see every label.

    split = load_split("work/quick/split.json")
    train_clips = clips_in(index, split, "train")     # also "val", "test", "all", "fold0", ...
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from facs.datasets.clips import Clip
from facs.datasets.index import Index, load_index
from facs.datasets.protocols import NAMES, load_protocol, protocol_folds
from facs.errors import FacsError
from facs.fileio import read_json, write_json

PARTS = ("train", "val", "test")


def _subject_key(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def subject_labels(index: Index) -> dict[str, set[str]]:
    """Subject -> labels active in any of their clips (in the index's label list)."""
    wanted = set(index.labels)
    out: dict[str, set[str]] = {}
    for c in index.clips:
        s = out.setdefault(c.subject, set())
        s.update(code for code, evs in c.events.items() if evs and code in wanted)
    return out


def subject_frames(index: Index) -> dict[str, int]:
    """Subject -> frames in their clips."""
    out: dict[str, int] = {}
    for c in index.clips:
        out[c.subject] = out.get(c.subject, 0) + c.frames
    return out


def _counts(n: int, val: float, test: float) -> tuple[int, int]:
    """Subjects for (val, test): rounded, at least 1 for a nonzero fraction, train keeps >= 1."""
    n_test = max(1, round(n * test)) if test > 0 else 0
    n_val = max(1, round(n * val)) if val > 0 else 0
    while n_test + n_val > n - 1 and (n_test > 1 or n_val > 1):
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        elif n_test > 1:
            n_test -= 1
        else:
            break
    if n_test + n_val > n - 1:
        raise FacsError(
            f"{n} subjects are too few for a train/val/test split (val={val}, test={test})"
        )
    return n_val, n_test


def _missing(labels: set[str], parts: list[set[str]], subj_labels: dict[str, set[str]]):
    have = [set().union(*(subj_labels[s] for s in p)) if p else set() for p in parts]
    return [sorted(labels - h) for h in have]


def split_subjects(
    index: Index, val: float = 0.15, test: float = 0.2, seed: int = 0, tries: int = 200
) -> dict[str, list[str]]:
    """{train, val, test: [subjects]}: the best of `tries` seeded shuffles, first for label
    coverage (train, then test, then val), then for frame shares close to the fractions (real
    MMI subjects have from one to dozens of clips)."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise FacsError(f"--val {val} / --test {test}: fractions must be in [0, 1) and sum < 1")
    subj_labels = subject_labels(index)
    subjects = sorted(subj_labels, key=_subject_key)
    n_val, n_test = _counts(len(subjects), val, test)
    labels = set(index.labels)
    frames = subject_frames(index)
    total = sum(frames.values()) or 1
    rng = random.Random(seed)
    best, best_score = None, None
    for _ in range(max(1, tries)):
        order = subjects[:]
        rng.shuffle(order)
        parts = {
            "test": order[:n_test],
            "val": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        miss = _missing(labels, [set(parts[p]) for p in ("train", "test", "val")], subj_labels)
        share = {p: sum(frames[s] for s in parts[p]) / total for p in ("val", "test")}
        imbalance = round(abs(share["val"] - val) + abs(share["test"] - test), 6)
        score = (*(len(m) for m in miss), imbalance)
        if best_score is None or score < best_score:
            best, best_score = parts, score
    assert best is not None
    return {p: sorted(best[p], key=_subject_key) for p in PARTS}


def k_folds(index: Index, k: int, seed: int = 0, tries: int = 200) -> list[list[str]]:
    """K disjoint subject folds covering every subject once (sizes differ by at most one): the
    shuffle whose folds' training sets (all other folds) miss the fewest labels, then the one
    with the most even frame counts."""
    subj_labels = subject_labels(index)
    subjects = sorted(subj_labels, key=_subject_key)
    if k < 2 or k > len(subjects):
        raise FacsError(f"--folds {k}: need 2 <= K <= number of subjects ({len(subjects)})")
    labels = set(index.labels)
    frames = subject_frames(index)
    rng = random.Random(seed + 1_000_003)  # a stream apart from the train/val/test shuffle
    best, best_score = None, None
    for _ in range(max(1, tries)):
        order = subjects[:]
        rng.shuffle(order)
        folds = [order[i::k] for i in range(k)]
        trains = [set(order) - set(f) for f in folds]
        fold_frames = [sum(frames[s] for s in f) for f in folds]
        score = (
            sum(len(m) for m in _missing(labels, trains, subj_labels)),
            max(fold_frames) - min(fold_frames),
        )
        if best_score is None or score < best_score:
            best, best_score = folds, score
    assert best is not None
    return [sorted(f, key=_subject_key) for f in best]


def make_split(
    index: Index,
    val: float = 0.15,
    test: float = 0.2,
    folds: int = 0,
    seed: int = 0,
    index_path: str | None = None,
    protocol: str | None = None,
) -> dict:
    """Train/val/test by subject; with `folds`, K folds by subject; with `protocol` (bp4d,
    disfa), the published folds of facs.datasets.protocols instead."""
    parts = split_subjects(index, val=val, test=test, seed=seed)
    subj_labels = subject_labels(index)
    miss = _missing(set(index.labels), [set(parts[p]) for p in PARTS], subj_labels)
    if protocol:
        fold_lists = protocol_folds(load_protocol(protocol), index.subjects)
    else:
        fold_lists = k_folds(index, folds, seed=seed) if folds else []
    extra = {"protocol": protocol} if protocol else {}
    return {
        "seed": seed,
        "by": "subject",
        "index": index_path,
        "fractions": {"val": val, "test": test},
        "parts": parts,
        "folds": fold_lists,
        **extra,
        "labels_missing": {p: m for p, m in zip(PARTS, miss, strict=True)},
        "clips": {p: sum(c.subject in set(parts[p]) for c in index.clips) for p in PARTS},
    }


def load_split(path: str | Path) -> dict:
    """Read WORK/split.json (FacsError naming the file if it is not a split)."""
    path = Path(path)
    d = read_json(path, "split file", "run `facs split` first")
    parts = d.get("parts")
    if not isinstance(parts, dict) or not all(p in parts for p in PARTS):
        raise FacsError(f"{path}: not a facs split (no parts train/val/test)")
    seen: dict[str, str] = {}
    for p in PARTS:
        for s in parts[p]:
            if s in seen:
                raise FacsError(f"{path}: subject {s} is in both {seen[s]} and {p}")
            seen[s] = p
    d.setdefault("folds", [])
    return d


def clips_in(index: Index, split: dict, part: str) -> list[Clip]:
    """Clips of a part: 'train', 'val', 'test', 'all', 'fold<i>' (its subjects) or
    'train-fold<i>' (every subject outside fold i), in index order."""
    if part == "all":
        return list(index.clips)
    if part in PARTS:
        subjects = set(split["parts"][part])
    elif part.startswith(("fold", "train-fold")):
        folds = split.get("folds") or []
        try:
            i = int(part.rsplit("fold", 1)[1])
            fold = set(folds[i])
        except (ValueError, IndexError):
            raise FacsError(
                f"split part {part!r}: the split has {len(folds)} folds (facs split --folds K)"
            ) from None
        subjects = fold if part.startswith("fold") else {s for f in folds for s in f} - fold
    else:
        raise FacsError(f"split part {part!r}: expected train, val, test, all, fold<i>")
    return [c for c in index.clips if c.subject in subjects]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", metavar="INDEX", help="WORK/index.json from facs index")
    parser.add_argument("-o", "--output", default=None, help="split file (default: beside INDEX)")
    parser.add_argument("--val", type=float, default=0.15, help="fraction of subjects for val")
    parser.add_argument("--test", type=float, default=0.2, help="fraction of subjects for test")
    parser.add_argument("--folds", type=int, default=0, help="also K folds by subject (K >= 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--protocol",
        choices=NAMES,
        default=None,
        help="folds = a published protocol's subject-exclusive 3 folds (bp4d, disfa)",
    )


def run(args: argparse.Namespace) -> int:
    index = load_index(args.index)
    out = Path(args.output) if args.output else Path(args.index).with_name("split.json")
    split = make_split(
        index,
        val=args.val,
        test=args.test,
        folds=args.folds,
        seed=args.seed,
        index_path=str(args.index),
        protocol=args.protocol,
    )
    write_json(out, split)
    p = split["parts"]
    line = (
        f"facs split: {len(p['train'])}/{len(p['val'])}/{len(p['test'])} subjects "
        f"(train/val/test), {split['clips']['train']}/{split['clips']['val']}/"
        f"{split['clips']['test']} clips"
    )
    if split["folds"]:
        line += f", {len(split['folds'])} folds"
        if args.protocol:
            line += f" ({args.protocol} protocol: {'/'.join(str(len(f)) for f in split['folds'])} "
            line += "test subjects)"
    if split["labels_missing"]["train"]:
        line += f"; labels absent from train: {' '.join(split['labels_missing']['train'])}"
    print(f"{line} -> {out}")
    return 0
