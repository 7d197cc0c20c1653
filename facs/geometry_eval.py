"""`facs geometry`: the landmark stream on an indexed corpus, per-AU F1 on held-out subjects.

    facs geometry --work work/quick [--config best] [--workers 2]

For every clip of the index: dlib landmarks per frame (cached in
`WORK/geometry/<clip>.landmarks.npy`, N x 68 x 2 float32, NaN where no face) -> geometric
features. Each clip is one person's video and is calibrated on its own neutral frames, as
`facs analyze` does with a video. Then:

- rules: facs.geometry's FACS rules, no training (labels without a rule score 0);
- learned: a logistic regression per label on the calibrated features and the rules' evidence
  of the train subjects
  (`WORK/geometry/classifier.json`, facs.geometry.LearnedGeometry).

Per-AU precision/recall/F1 at 0.5 on the test subjects is printed for both and written to
`WORK/geometry/report.json`. With `--config C`, the learned (default) or rule scores of the val
and test parts are written as `WORK/scores/C/geometry_{val,test}.npz` (facs.scores format),
aligned record by record with the CNN streams' scores when those exist, so `facs evaluate` puts
the geometry stream in its table and `facs fuse` can fuse it.

With `--models M` too, `M/<profile>-<config>/geometry/` gets `stream.json` (+ the classifier),
the geometry entry of that model folder's model.json.

Python API for the evaluation: `geometry_scores(index, split, part, work) -> (keys, probs)`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facs import geometry as G
from facs.errors import FacsError

Key = tuple[str, int]  # (clip id, frame)


def _clip_job(job: tuple[str, str, str]) -> tuple[str, str]:
    clip_id, video, out = job
    from facs.landmarks import LandmarkTracker
    from facs.video import read_frames

    tracker = LandmarkTracker()
    faces = [tracker(f) for f in read_frames(video)]
    from facs.workdir import save_npy

    save_npy(Path(out), landmarks_array(faces))
    return clip_id, out


def landmarks_array(faces) -> np.ndarray:
    """List of FaceLandmarks | None -> N x 68 x 2 float32 (NaN where no face)."""
    out = np.full((len(faces), 68, 2), np.nan, np.float32)
    for i, f in enumerate(faces):
        if f is not None:
            out[i] = f.points
    return out


def features_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """N x 68 x 2 (NaN where no face) -> N x F features, as facs.predict computes them."""
    ok = np.isfinite(pts).all(axis=(1, 2))
    feats = np.full((len(pts), len(G.FEATURES)), np.nan, np.float32)
    if ok.any():
        feats[ok] = G.features(pts[ok])
    return G.smooth(feats)


def features_dir(work: Path) -> Path:
    return Path(work) / "geometry"


def clip_features(index, work: Path, clips=None, workers: int = 1) -> dict[str, np.ndarray]:
    """clip id -> N x F features of every (given) clip; landmarks found once, cached under
    WORK (features are recomputed from them, so changing facs.geometry needs no new pass)."""
    from facs.workdir import parallel_map

    clips = list(index.clips if clips is None else clips)
    folder = features_dir(work)
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for c in clips:
        out = folder / f"{c.id}.landmarks.npy"
        if not out.is_file():
            todo.append((c.id, str(index.video_path(c)), str(out)))
    if todo:
        for _ in parallel_map(_clip_job, todo, workers, "facs geometry: landmarks"):
            pass
    feats = {}
    for c in clips:
        pts = np.load(folder / f"{c.id}.landmarks.npy")
        if len(pts) != c.frames:  # decoders may disagree with the header by a frame or two
            g = np.full((c.frames, 68, 2), np.nan, np.float32)
            g[: min(len(pts), c.frames)] = pts[: c.frames]
            pts = g
        feats[c.id] = features_from_landmarks(pts)
    return feats


def _part_clips(index, split: dict, part: str) -> list:
    subjects = {str(s) for s in split["parts"].get(part, [])}
    if not subjects:
        raise FacsError(f"split.json: no part {part!r} (has: {', '.join(split['parts'])})")
    return [c for c in index.clips if str(c.subject) in subjects]


def _probs(feats: np.ndarray, labels: list[str], fps: float, clf=None) -> np.ndarray:
    if clf is None:
        p = G.rule_probs(feats, labels, fps=fps)
    else:
        p = clf.predict(G.learned_inputs(feats, fps))
        pos = {c: i for i, c in enumerate(clf.labels)}
        p = np.stack(
            [p[:, pos[c]] if c in pos else np.zeros(len(p), np.float32) for c in labels], 1
        )
    return np.nan_to_num(p, nan=0.0).astype(np.float32)


def geometry_scores(
    index, split: dict, part: str, work: Path, classifier=None, workers: int = 1
) -> tuple[list[Key], np.ndarray]:
    """Every frame of the part's clips: keys [(clip id, frame)] and N x L probabilities over
    the index's labels (rules, or `classifier` = a LearnedGeometry)."""
    clips = _part_clips(index, split, part)
    feats = clip_features(index, work, clips, workers)
    keys: list[Key] = []
    rows = []
    for c in clips:
        keys.extend((c.id, i) for i in range(c.frames))
        rows.append(_probs(feats[c.id], index.labels, c.fps, classifier))
    return keys, np.concatenate(rows) if rows else np.zeros((0, len(index.labels)), np.float32)


def part_labels(index, split: dict, part: str) -> np.ndarray:
    return np.concatenate([index.frame_labels(c) for c in _part_clips(index, split, part)])


def fit_classifier(index, split: dict, work: Path, workers: int = 1) -> G.LearnedGeometry:
    """Logistic regression per label on the train subjects' calibrated features."""
    clips = _part_clips(index, split, "train")
    feats = clip_features(index, work, clips, workers)
    x = np.concatenate([G.learned_inputs(feats[c.id], c.fps) for c in clips])
    y = np.concatenate([index.frame_labels(c) for c in clips])
    return G.LearnedGeometry.fit(x, y, index.labels)


def parse_key(key: str) -> Key:
    """LMDB key "{i:08d}_{clip_id}_{frame:05d}[_{aug}]" -> (clip id, frame)."""
    parts = key.split("_")
    for j in range(len(parts) - 1, 1, -1):
        if parts[j].isdigit() and len(parts[j]) == 5:
            return "_".join(parts[1:j]), int(parts[j])
    raise FacsError(f"scores key {key!r}: not '<i>_<clip>_<frame>'")


def write_scores(
    work: Path, config: str, index, split: dict, classifier=None, workers: int = 1
) -> list[Path]:
    """WORK/scores/<config>/geometry_{val,test}.npz, aligned with the CNN streams' records."""
    from facs.scores import save_scores

    folder = Path(work) / "scores" / config
    written = []
    for part in ("val", "test"):
        if not split["parts"].get(part):
            continue
        keys, probs = geometry_scores(index, split, part, work, classifier, workers)
        y = part_labels(index, split, part)
        subj = {c.id: c.subject for c in index.clips}
        row = {k: i for i, k in enumerate(keys)}
        ref = next(
            (
                folder / f"{s}_{part}.npz"
                for s in ("spatial", "flow", "onevsall")
                if (folder / f"{s}_{part}.npz").is_file()
            ),
            None,
        )
        if ref is not None:  # the CNN streams' records: a subset of frames, in their order
            from facs.scores import load_scores

            ref_keys = [str(k) for k in load_scores(ref)["keys"]]
            idx = []
            for k in ref_keys:
                ck = parse_key(k)
                if ck not in row:
                    raise FacsError(f"{ref}: record {k} is not a frame of the {part} clips")
                idx.append(row[ck])
            out_keys = ref_keys
        else:
            idx = list(range(len(keys)))
            out_keys = [f"{i:08d}_{c}_{f:05d}" for i, (c, f) in enumerate(keys)]
        sel = np.asarray(idx, dtype=np.int64)
        path = folder / f"geometry_{part}.npz"
        save_scores(
            path,
            out_keys,
            probs[sel],
            y[sel],
            index.labels,
            [subj[keys[i][0]] for i in sel],
        )
        written.append(path)
    return written


def report(work: Path, index, split: dict, workers: int = 1) -> dict:
    """Per-AU metrics at 0.5 on the test subjects for the rules and the learned classifier."""
    from facs.metrics import evaluate_scores

    clf = fit_classifier(index, split, work, workers)
    clf.save(features_dir(work) / "classifier.json")
    y = part_labels(index, split, "test")
    out = {"labels": index.labels, "test_frames": int(len(y)), "methods": {}}
    for name, c in (("rules", None), ("learned", clf)):
        _, probs = geometry_scores(index, split, "test", work, c, workers)
        out["methods"][name] = evaluate_scores(y, probs, index.labels, 0.5)
    out["covered_by_rules"] = [c for c in index.labels if c in G.RULES or c == "45"]
    return out


def format_report(rep: dict) -> str:
    labels = rep["labels"]
    lines = [f"geometry stream, test subjects ({rep['test_frames']} frames), F1 at 0.5:"]
    lines.append(f"{'AU':>5} {'support':>8} {'rules':>7} {'learned':>8}")
    m = rep["methods"]
    for c in labels:
        r, lr = m["rules"]["per_label"][c], m["learned"]["per_label"][c]
        lines.append(f"{c:>5} {r['support']:>8} {r['f1']:>7.3f} {lr['f1']:>8.3f}")
    lines.append(
        f"{'macro':>5} {'':>8} {m['rules']['summary']['f1_macro'] or 0:>7.3f} "
        f"{m['learned']['summary']['f1_macro'] or 0:>8.3f}   (over labels present in test)"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from facs.profile import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument(
        "--config", default=None, help="also write WORK/scores/CONFIG/geometry_{val,test}.npz"
    )
    parser.add_argument(
        "--scores", choices=("learned", "rules"), default="learned", help="what --config writes"
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="with --config: also write <models>/<profile>-<config>/geometry/ (stream.json, "
        "classifier.json) for the model folder",
    )


def run(args: argparse.Namespace) -> int:
    from facs.datasets.index import load_index
    from facs.profile import default_work
    from facs.workdir import load_split, write_json

    work = Path(args.work or default_work(args.profile))
    index = load_index(work / "index.json")
    split = load_split(work)
    rep = report(work, index, split, args.workers)
    write_json(features_dir(work) / "report.json", rep)
    print(format_report(rep))
    if args.config:
        clf = G.LearnedGeometry.load(features_dir(work) / "classifier.json")
        paths = write_scores(
            work, args.config, index, split, clf if args.scores == "learned" else None, args.workers
        )
        for p in paths:
            print(f"  -> {p}")
        if args.models is not None:
            from facs.profile import load_profile

            name = load_profile(args.profile).get("name", "quick")
            out = write_stream(
                args.models / f"{name}-{args.config}" / "geometry", work, args.scores
            )
            print(f"  -> {out}")
    return 0


def write_stream(folder: Path, work: Path, method: str = "learned") -> Path:
    """A model folder's geometry/ part: stream.json (+ classifier.json for `learned`).

    stream.json is {"method": "rules"} or {"method": "learned", "classifier":
    "classifier.json"} (path relative to geometry/), the model.json entry facs.predict reads."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    entry: dict = {"method": method}
    if method == "learned":
        shutil.copyfile(features_dir(work) / "classifier.json", folder / "classifier.json")
        entry["classifier"] = "classifier.json"
    entry["input"] = {"kind": "landmarks", "features": list(G.FEATURES)}
    (folder / "stream.json").write_text(json.dumps(entry, indent=1) + "\n")
    return folder / "stream.json"
