"""`facs geometry`: the landmark stream on an indexed corpus, per-AU F1 on held-out subjects.

    facs geometry --work work/quick [--config best] [--models models] [--workers 2]

For every clip of the index: dlib landmarks per frame (cached in
`WORK/geometry/<clip>.landmarks.npy`, N x 68 x 2 float32, NaN where no face) -> the landmark
stream's features and probabilities (facs.analysis.geometry: the definition `facs analyze`
runs on a video; each clip is one person's video, calibrated on its own neutral frames). Then:

- rules: the FACS rules, no training;
- learned: a logistic regression per label on the calibrated features and the rules' evidence
  of the train subjects (`WORK/geometry/classifier.json`).

Per-AU precision/recall/F1 at 0.5 on the test subjects is printed for both and written to
`WORK/geometry/report.json`. With `--config C`, the learned (default) or rule scores of the val
and test parts are written as `WORK/scores/C/geometry_{val,test}.npz`, aligned record by record
with the CNN streams' scores when those exist, so `facs evaluate` puts the stream in its table
and `facs fuse --streams spatial,flow,geometry` can fuse it. With `--models M` too,
`M/<profile>-<config>/geometry/` gets the stream's stream.json (+ the classifier).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facs.analysis import geometry as G
from facs.analysis.landmarks import LandmarkTracker
from facs.analysis.model import StreamSpec, write_stream
from facs.datasets.index import Index, load_index
from facs.datasets.split import clips_in, load_split
from facs.errors import FacsError
from facs.evaluation.metrics import evaluate_scores
from facs.evaluation.scores import Scores, load_scores, save_scores
from facs.fileio import copy_file, save_npy, write_json
from facs.preprocess.workdir import key_subjects, parallel_map, parse_record_key, record_key
from facs.profile import add_common_arguments, default_work, load_profile
from facs.video import read_frames

Key = tuple[str, int]  # (clip id, frame)


def features_dir(work: Path) -> Path:
    return Path(work) / "geometry"


def _clip_job(job: tuple[str, str, str]) -> str:
    clip_id, video, out = job
    tracker = LandmarkTracker()
    save_npy(Path(out), G.points_array([tracker(f) for f in read_frames(video)]))
    return clip_id


def clip_features(index: Index, work: Path, clips, workers: int = 1) -> dict[str, np.ndarray]:
    """clip id -> N x F features of the clips; landmarks found once and cached under WORK
    (features are recomputed from them, so changing the rules needs no new pass)."""
    folder = features_dir(work)
    todo = [
        (c.id, str(index.video_path(c)), str(folder / f"{c.id}.landmarks.npy"))
        for c in clips
        if not (folder / f"{c.id}.landmarks.npy").is_file()
    ]
    for _ in parallel_map(_clip_job, todo, workers, "facs geometry: landmarks"):
        pass
    feats = {}
    for c in clips:
        pts = np.load(folder / f"{c.id}.landmarks.npy")
        if len(pts) != c.frames:  # decoders may disagree with the header by a frame or two
            g = np.full((c.frames, 68, 2), np.nan, np.float32)
            g[: min(len(pts), c.frames)] = pts[: c.frames]
            pts = g
        feats[c.id] = G.features_of_points(pts)
    return feats


def part_scores(
    index: Index, split: dict, part: str, work: Path, classifier=None, workers: int = 1
) -> tuple[list[Key], np.ndarray, np.ndarray]:
    """Every frame of the part's clips: keys [(clip id, frame)], N x L probabilities over the
    index's labels (NaN: no opinion) and N x L labels."""
    clips = clips_in(index, split, part)
    feats = clip_features(index, work, clips, workers)
    keys: list[Key] = []
    probs, labels = [], []
    for c in clips:
        keys.extend((c.id, i) for i in range(c.frames))
        probs.append(G.stream_probs(feats[c.id], index.labels, c.fps, classifier))
        labels.append(index.frame_labels(c))
    if not clips:
        empty = np.zeros((0, len(index.labels)), np.float32)
        return keys, empty, empty.astype(np.int8)
    return keys, np.concatenate(probs), np.concatenate(labels)


def fit_classifier(index: Index, split: dict, work: Path, workers: int = 1) -> G.LearnedGeometry:
    """Logistic regression per label on the train subjects' calibrated features."""
    clips = clips_in(index, split, "train")
    feats = clip_features(index, work, clips, workers)
    x = np.concatenate([G.learned_inputs(feats[c.id], c.fps) for c in clips])
    y = np.concatenate([index.frame_labels(c) for c in clips])
    return G.LearnedGeometry.fit(x, y, index.labels)


def write_scores(
    work: Path, config: str, index: Index, split: dict, classifier=None, workers: int = 1
) -> list[Path]:
    """WORK/scores/<config>/geometry_{val,test}.npz, aligned with the CNN streams' records."""
    folder = Path(work) / "scores" / config
    written = []
    for part in ("val", "test"):
        if not split["parts"].get(part):
            continue
        keys, probs, y = part_scores(index, split, part, work, classifier, workers)
        row = {k: i for i, k in enumerate(keys)}
        ref = next(
            (folder / f"{s}_{part}.npz" for s in ("spatial", "flow", "onevsall")
             if (folder / f"{s}_{part}.npz").is_file()),
            None,
        )  # fmt: skip
        if ref is not None:  # the CNN streams' records: a subset of frames, in their order
            out_keys = load_scores(ref).keys
            sel = [row.get(parse_record_key(k)[:2]) for k in out_keys]
            if any(i is None for i in sel):
                raise FacsError(f"{ref}: holds records that are not frames of the {part} clips")
        else:
            sel = list(range(len(keys)))
            out_keys = [record_key(i, c, f) for i, (c, f) in enumerate(keys)]
        idx = np.asarray(sel, dtype=np.int64)
        path = folder / f"geometry_{part}.npz"
        scores = Scores(out_keys, probs[idx], y[idx], index.labels, key_subjects(out_keys, index))
        written.append(save_scores(path, scores))
    return written


def report(work: Path, index: Index, split: dict, workers: int = 1) -> dict:
    """Per-AU metrics at 0.5 on the test subjects for the rules and the learned classifier."""
    clf = fit_classifier(index, split, work, workers)
    clf.save(features_dir(work) / "classifier.json")
    out: dict = {"labels": index.labels, "methods": {}}
    for name, c in (("rules", None), ("learned", clf)):
        _, probs, y = part_scores(index, split, "test", work, c, workers)
        # a label without a rule is never predicted
        out["methods"][name] = evaluate_scores(y, np.nan_to_num(probs), index.labels, 0.5)
        out["test_frames"] = int(len(y))
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


def write_stream_folder(folder: Path, work: Path, method: str = "learned") -> Path:
    """A model folder's geometry/ part: stream.json (+ classifier.json for `learned`)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = StreamSpec(kind="landmarks", folder=folder.name, method=method)
    if method == "learned":
        copy_file(features_dir(work) / "classifier.json", folder / "classifier.json")
        spec.classifier = "classifier.json"
    return write_stream(folder, spec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    profile = load_profile(args.profile)
    work = Path(args.work or default_work(profile["name"]))
    index = load_index(work / "index.json")
    split = load_split(work / "split.json")
    rep = report(work, index, split, args.workers)
    write_json(features_dir(work) / "report.json", rep, indent=1)
    print(format_report(rep))
    if args.config:
        clf = G.LearnedGeometry.load(features_dir(work) / "classifier.json")
        chosen = clf if args.scores == "learned" else None
        for p in write_scores(work, args.config, index, split, chosen, args.workers):
            print(f"  -> {p}")
        if args.models is not None:
            folder = args.models / f"{profile['name']}-{args.config}" / "geometry"
            print(f"  -> {write_stream_folder(folder, work, args.scores)}")
    return 0
