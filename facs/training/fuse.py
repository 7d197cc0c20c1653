"""`facs fuse`: (iv) fusion of a configuration's stream scores, and the model folder's model.json.

    facs fuse --work work/quick --config best [--streams spatial,flow] [--method auto]

Fits a fusion (facs.training.fusion) on the validation scores of the streams, writes
`WORK/scores/<config>/fusion.json` and `fused_{val,test}.npz` (validation: the out-of-fold
predictions the fusion was judged by), chooses the thresholds by cross-validation over the
validation subjects (facs.training.thresholds), and writes
`models/<profile>-<config>/model.json` (facs.analysis.model) from the streams' stream.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facs.analysis.model import SYNTHETIC, Model, now, read_stream, write_model
from facs.datasets.index import load_index
from facs.datasets.split import load_split
from facs.errors import FacsError
from facs.evaluation.scores import Scores, check_same_records, load_scores, save_scores
from facs.fileio import write_json
from facs.preprocess.workdir import keys_frames_clips, scores_dir
from facs.profile import add_common_arguments, default_work, load_profile
from facs.synth import is_synthetic
from facs.training.fusion import METHODS, SMOOTH_FRAMES, fit_fusion, fuse
from facs.training.thresholds import METHODS as THRESHOLD_METHODS
from facs.training.thresholds import as_dict, choose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, workers=False)
    parser.add_argument("--config", default="best", help="configuration name under WORK/scores/")
    parser.add_argument("--streams", default="spatial,flow", help="streams to fuse")
    parser.add_argument(
        "--method",
        choices=("auto", *METHODS),
        help="default: the profile's lmdb.configs.<config>.fusion.method, or auto",
    )
    parser.add_argument(
        "--thresholds",
        default=None,
        choices=("auto", *THRESHOLD_METHODS),
        help="thresholds saved with the model (auto: chosen by CV on validation)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="models folder: writes <models>/<profile>-<config>/model.json",
    )
    parser.add_argument(
        "--smooth",
        default=None,
        choices=("none", "auto"),
        help="temporal smoothing of the fused scores (auto: window chosen on "
        f"validation among {SMOOTH_FRAMES} frames)",
    )
    parser.add_argument("--seed", type=int, default=0)


def model_of(folder: Path, fusion: dict, labels, thresholds, choice, trained_on) -> Model:
    """The model a fusion makes of the streams trained into `folder` (their stream.json)."""
    missing = [s for s in fusion["streams"] if not (folder / s / "stream.json").is_file()]
    if missing:
        raise FacsError(f"{folder}: the fusion needs stream(s) {missing} that are not there")
    ova = sorted(p.parent for p in folder.glob("onevsall/*/stream.json"))
    onevsall = {}
    for d in ova:
        spec = read_stream(d)
        spec.folder = f"onevsall/{d.name}"
        onevsall[d.name] = spec
    return Model(
        name=folder.name,
        labels=list(labels),
        streams={s: read_stream(folder / s) for s in fusion["streams"]},
        fusion=fusion,
        thresholds=thresholds,
        created=now(),
        trained_on=trained_on,
        threshold_choice=choice,
        onevsall=onevsall,
        folder=folder,
    )


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    folder = scores_dir(work, args.config)
    # Defaults per configuration from the profile (lmdb.configs.<config>.fusion).
    conf = profile.get("lmdb", {}).get("configs", {}).get(args.config, {}).get("fusion", {})
    method = args.method or conf.get("method", "auto")
    thresholds = args.thresholds or conf.get("thresholds", "auto")
    smoothing = args.smooth or conf.get("smooth", "none")
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    parts = {
        part: {s: load_scores(folder / f"{s}_{part}.npz") for s in streams}
        for part in ("val", "test")
    }
    for part, scores in parts.items():
        check_same_records(scores, folder / f"*_{part}.npz")
    ref = parts["val"][streams[0]]
    vf, vc = keys_frames_clips(ref.keys)
    spec, val_pred = fit_fusion(
        {s: parts["val"][s].probs for s in streams},
        ref.labels,
        method,
        groups=ref.subjects,
        seed=args.seed,
        frames=vf,
        clips=vc,
        smooth_frames=SMOOTH_FRAMES if smoothing == "auto" else (0,),
    )
    write_json(folder / "fusion.json", spec, indent=1)
    for part, scores in parts.items():
        base = scores[streams[0]]
        if part == "val":
            # out-of-fold for a learned fusion: what it was judged and its thresholds chosen by
            fused = val_pred
        else:
            pf, pc = keys_frames_clips(base.keys)
            fused = fuse({s: scores[s].probs for s in streams}, spec, pf, pc)
        save_scores(
            folder / f"fused_{part}.npz",
            Scores(base.keys, fused, base.labels, base.label_names, base.subjects),
        )
    print(
        f"fusion {args.config}: {spec['method']} (validation macro F1 {spec['val_f1_macro']}), "
        f"smoothing over {spec.get('smooth_frames', 0)} frames -> {folder / 'fusion.json'}"
    )
    labels = list(ref.label_names)
    methods = THRESHOLD_METHODS if thresholds == "auto" else (thresholds,)
    # Thresholds from the validation predictions the fusion was judged by (out-of-fold for a
    # learned fusion: its in-sample scores on validation are too confident).
    tm, thr, cv = choose(ref.labels, val_pred, ref.subjects, methods)
    mdir = args.models / f"{profile['name']}-{args.config}"
    if any((mdir / s / "stream.json").is_file() for s in streams):
        index = load_index(work / "index.json")
        split = load_split(work / "split.json")
        trained_on = {
            "data": str(index.root),
            "profile": profile.get("name"),
            "config": args.config,
            "label_mode": index.label_mode,
            "train_subjects": list(split["parts"]["train"]),
            "val_subjects": list(split["parts"]["val"]),
            "test_subjects": list(split["parts"]["test"]),
            "faces": SYNTHETIC if is_synthetic(index.root) else f"real faces ({index.root.name})",
        }
        model = model_of(
            mdir, spec, labels, as_dict(labels, thr), {"method": tm, "cv_f1_macro": cv}, trained_on
        )
        out = write_model(model)
        print(f"fusion {args.config}: thresholds '{tm}' (CV macro F1 {cv}); model -> {out}")
    return 0
