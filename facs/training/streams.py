"""`facs train-stream`: train one stream of a configuration on WORK's LMDBs and score it.

    facs train-stream --work work/quick --profile quick --config best --stream spatial

The prototxt templates in `prototxt/<profile>/` are rendered (facs.training.render) with the
configuration's LMDBs into the stream's model folder, trained with `facs.caffe.train.train`,
and the final weights packaged beside a deploy prototxt; then the validation and test LMDBs
are scored by the deploy runtime (facs.caffe.deploy) into
`WORK/scores/<config>/<stream>_{val,test}.npz`.

    models/<profile>-<config>/<stream>/train_val.prototxt solver.prototxt deploy.prototxt
                   weights.caffemodel  mean.binaryproto  stream.json (facs.analysis.model)
                   snap_iter_N.caffemodel/.solverstate  snap_train.log/.csv
    models/<profile>-<config>/onevsall/<code>/...   one 2-way net per label present in training

Streams: `spatial` (i) AN-Finetune, multi-label sigmoid; `onevsall` (ii) one 2-way softmax net
per label (initialised from the spatial net's weights where the profile says so); `flow` (iii)
the temporal net from scratch. A stream whose prototxts, LMDBs, initial weights and seed are
unchanged is not trained again.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from tqdm import tqdm

from facs.analysis.model import StreamSpec, read_stream, write_stream
from facs.aus import UNKNOWN
from facs.caffe import caffe_pb2
from facs.caffe.deploy import DeployNet, score_lmdb
from facs.caffe.io import write_prototxt
from facs.caffe.lmdb import read_labels
from facs.caffe.train import train
from facs.datasets.index import Index, load_index
from facs.errors import FacsError
from facs.evaluation.scores import Scores, save_scores
from facs.fileio import atomic_path, copy_file, read_json, write_json
from facs.preprocess.records import StreamInput
from facs.preprocess.workdir import key_subjects, lmdb_dir, scores_dir
from facs.profile import add_common_arguments, default_work, describe, load_profile
from facs.training.render import (
    data_scale,
    render_deploy,
    render_solver,
    render_train_val,
    repo_path,
    set_label_column,
    train_settings,
)

STREAMS = ("spatial", "onevsall", "flow")
PARTS = ("train", "val", "test")
MEAN = "mean.binaryproto"


@dataclass
class LmdbPair:
    """A data LMDB, its label LMDB, the train mean and the manifest (facs.preprocess.lmdb)."""

    data: Path
    labels: Path
    mean: Path | None
    manifest: dict

    @property
    def input(self) -> StreamInput:
        return StreamInput.from_json(self.manifest["input"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint"))


def find_lmdb(work: Path, config: str, stream: str, part: str) -> LmdbPair:
    """The LMDB pair of a (configuration, stream kind, split part), from its manifest."""
    folder = lmdb_dir(work, config)
    manifest = read_json(
        folder / f"{part}_{stream}.json", "LMDB manifest", "run scripts/05_lmdb.sh first"
    )
    mean = folder / manifest["mean"] if manifest.get("mean") else None
    return LmdbPair(
        data=folder / manifest["data"],
        labels=folder / manifest["labels_db"],
        mean=mean if mean is not None and mean.is_file() else None,
        manifest=manifest,
    )


# ---------------------------------------------------------------- one net


def _fingerprint(messages, lmdbs: dict[str, LmdbPair], init: Path | None, seed, device) -> str:
    """Same prototxts, same LMDBs, same initial weights, same seed: the same trained net."""
    h = hashlib.sha256()
    for m in messages:
        h.update(text_format.MessageToString(m).encode())
    for part in ("train", "val"):
        h.update(lmdbs[part].fingerprint.encode())
    if init is not None:
        h.update(hashlib.sha256(Path(init).read_bytes()).hexdigest().encode())
    h.update(f"{seed} {device}".encode())
    return h.hexdigest()[:16]


def render_nets(
    settings: dict,
    out: Path,
    lmdbs: dict[str, LmdbPair],
    num_output: int,
    column: int | None,
    n_labels: int,
    seed: int,
) -> tuple[caffe_pb2.NetParameter, caffe_pb2.SolverParameter, caffe_pb2.NetParameter, int]:
    """(train_val net, solver, deploy net, crop) of one net, rendered for `out`."""
    train_l = lmdbs["train"]
    # The net's input size: the profile's, else the LMDB's crop (the Data layer crops to it).
    crop = int(settings.get("crop") or train_l.manifest.get("crop") or train_l.input.faces.size)
    sources = {
        "TRAIN": (train_l.data, train_l.labels),
        "TEST": (lmdbs["val"].data, lmdbs["val"].labels),
    }
    # The mean sits beside the rendered net: a relative path keeps the caffemodel free of
    # machine paths (two identical runs give identical files).
    mean = Path(MEAN) if train_l.mean is not None else None
    template = repo_path(settings["train_val"])
    net = render_train_val(template, sources, mean, crop, num_output, settings.get("batch"))
    if column is not None:
        set_label_column(net, column, n_labels)
    overrides = {"random_seed": seed, **settings.get("solver_overrides", {})}
    solver = render_solver(
        repo_path(settings["solver"]), out / "train_val.prototxt", out / "snap", overrides
    )
    channels = train_l.input.channels
    deploy = render_deploy(repo_path(settings["deploy"]), channels, crop, num_output)
    return net, solver, deploy, crop


def _check_ignore_label(net, settings: dict, lmdbs: dict[str, LmdbPair]) -> None:
    """Labels with uncoded cells (-1) need loss layers that ignore them: a plain
    SigmoidCrossEntropyLoss would read -1 as a target and learn from it."""
    unknown = [p for p, pair in lmdbs.items() if any(pair.manifest.get("unknown", []))]
    if not unknown:
        return
    for la in net.layer:
        if la.type.endswith("Loss") and not (
            la.loss_param.HasField("ignore_label") and la.loss_param.ignore_label == UNKNOWN
        ):
            raise FacsError(
                f"{settings['train_val']}: loss layer '{la.name}' needs "
                f"loss_param {{ ignore_label: {UNKNOWN} }}: the {', '.join(unknown)} labels "
                "hold cells the corpus did not code (-1)"
            )


def train_one(
    settings: dict,
    out: Path,
    lmdbs: dict[str, LmdbPair],
    num_output: int,
    column: int | None = None,
    n_labels: int = 0,
    init_weights: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> StreamSpec:
    """Render, train and package one net into `out`; returns its StreamSpec (also written to
    out/stream.json). Skipped when out/stream.json has the same fingerprint."""
    out.mkdir(parents=True, exist_ok=True)
    net, solver, deploy, crop = render_nets(
        settings, out, lmdbs, num_output, column, n_labels, seed
    )
    _check_ignore_label(net, settings, lmdbs)
    fingerprint = _fingerprint((net, solver, deploy), lmdbs, init_weights, seed, device)
    if (out / "stream.json").is_file() and (out / "weights.caffemodel").is_file():
        old = read_stream(out)
        if old.training.get("fingerprint") == fingerprint:
            print(f"train-stream: {out} is up to date (fingerprint {fingerprint}), skipped")
            return old
    (out / "stream.json").unlink(missing_ok=True)
    mean = lmdbs["train"].mean
    if mean is not None:
        copy_file(mean, out / MEAN)
    for name, message in (("train_val", net), ("solver", solver), ("deploy", deploy)):
        write_prototxt(out / f"{name}.prototxt", message)
    print(
        f"train-stream: {out}: net {settings['train_val']}, solver {settings['solver']}, "
        f"deploy {settings['deploy']} (rendered beside the weights)"
    )
    t0 = time.perf_counter()
    final = train(out / "solver.prototxt", weights=init_weights, device=device, seed=seed)
    copy_file(final, out / "weights.caffemodel")
    spec = StreamSpec(
        kind="cnn",
        folder=out.name,
        deploy="deploy.prototxt",
        weights="weights.caffemodel",
        mean=MEAN if mean is not None else None,
        input=lmdbs["train"].input,
        crop=crop,
        scale=data_scale(net),
        training={
            "seconds": round(time.perf_counter() - t0, 1),
            "iterations": int(solver.max_iter),
            "fingerprint": fingerprint,
        },
    )
    write_stream(out, spec)
    return spec


def load_deploy(folder: Path) -> DeployNet:
    """The packaged net of a stream folder (its stream.json), through the deploy runtime."""
    spec = read_stream(folder)
    return DeployNet.load(
        folder / spec.deploy,
        folder / spec.weights,
        folder / spec.mean if spec.mean else None,
        spec.input.shape,
        spec.crop,
        spec.scale,
    )


def score_cached(folders: list[Path], pair: LmdbPair, part: str) -> tuple[list[str], list]:
    """Keys and each packaged net's probabilities of one LMDB, kept in
    <folder>/scores_<part>.npz for the same net and LMDB; only the nets without such a file
    are scored (in one pass over the records)."""
    found: dict[int, np.ndarray] = {}
    keys: list[str] = []
    tags = []
    for i, d in enumerate(folders):
        tags.append(f"{read_stream(d).training.get('fingerprint', '')}:{pair.fingerprint}")
        cache = d / f"scores_{part}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                if str(z["fingerprint"]) == tags[-1]:
                    keys, found[i] = [str(k) for k in z["keys"]], z["probs"]
    todo = [i for i in range(len(folders)) if i not in found]
    if todo:
        nets = [load_deploy(folders[i]) for i in todo]
        name = "onevsall" if len(folders) > 1 else folders[0].name
        with tqdm(total=pair.manifest["count"], desc=f"score {name}", unit="frame") as bar:
            keys, probs = score_lmdb(nets, pair.data, progress=bar.update)
        for i, p in zip(todo, probs, strict=True):
            found[i] = p
            with atomic_path(folders[i] / f"scores_{part}.npz", ".npz") as tmp:
                np.savez(tmp, keys=np.asarray(keys, str), probs=p, fingerprint=np.asarray(tags[i]))
    return keys, [found[i] for i in range(len(folders))]


# ---------------------------------------------------------------- one stream of a configuration


def model_dir(models: Path, profile: dict, config: str) -> Path:
    return Path(models) / f"{profile.get('name', 'quick')}-{config}"


def pretrained(settings: dict) -> Path | None:
    """The profile's `weights` for a stream (e.g. bvlc_alexnet.caffemodel for the paper's
    AN-Finetune), or None; a missing file is said loudly and training starts from the fillers."""
    if not settings.get("weights"):
        return None
    path = repo_path(settings["weights"])
    if path.is_file():
        return path
    bar = "!" * 78
    print(
        f"{bar}\ntrain-stream: pretrained weights {path} not found "
        "(scripts/fetch_alexnet.sh fetches them where the internet is reachable);\n"
        f"TRAINING FROM RANDOM INITIALISATION instead: this is not the report's fine-tuning.\n{bar}"
    )
    return None


def _prevalence(work: Path, config: str, labels: list[str], y: np.ndarray) -> None:
    coded = y != UNKNOWN
    rate = (y > 0.5).sum(0) / np.maximum(coded.sum(0), 1) if not coded.all() else (y > 0.5).mean(0)
    prev = {c: round(float(v), 6) for c, v in zip(labels, rate, strict=True)}
    write_json(
        scores_dir(work, config) / "train_prevalence.json",
        {"records": int(len(y)), "prevalence": prev},
        indent=1,
    )


def _train_net_stream(ctx: dict, stream: str) -> Path:
    """(i) spatial or (iii) flow: one multi-label net, scored on val and test."""
    out = ctx["mdir"] / stream
    settings = ctx["settings"]
    train_one(
        settings,
        out,
        ctx["lmdbs"],
        len(ctx["labels"]),
        init_weights=pretrained(settings),
        seed=ctx["seed"],
        device=ctx["device"],
    )
    for part in ("val", "test"):
        pair = ctx["lmdbs"][part]
        keys, (probs,) = score_cached([out], pair, part)
        y = read_labels(pair.labels).astype(np.int8)
        scores = Scores(keys, probs, y, ctx["labels"], key_subjects(keys, ctx["index"]))
        save_scores(scores_dir(ctx["work"], ctx["config"]) / f"{stream}_{part}.npz", scores)
    return out


def _train_onevsall(ctx: dict, ytrain: np.ndarray) -> Path:
    """(ii) one 2-way net per label that occurs in the training frames."""
    labels, settings, mdir = ctx["labels"], ctx["settings"], ctx["mdir"]
    present = [j for j in range(len(labels)) if (ytrain[:, j] == 1).any()]
    if settings.get("labels"):
        # A cap for quick runs and tests: the N most frequent labels (ties: label order).
        keep = sorted(present, key=lambda j: -(ytrain[:, j] == 1).sum())[: int(settings["labels"])]
        present = sorted(keep)
    init = pretrained(settings)
    if settings.get("init_from"):
        init = mdir / settings["init_from"] / "weights.caffemodel"
        if not init.is_file():
            raise FacsError(
                f"{init}: one-vs-all starts from the {settings['init_from']} net; "
                "train that stream first"
            )
    folders = [mdir / "onevsall" / labels[j] for j in present]
    for j, out in zip(present, folders, strict=True):
        train_one(
            settings,
            out,
            ctx["lmdbs"],
            2,
            column=j,
            n_labels=len(labels),
            init_weights=init,
            seed=ctx["seed"],
            device=ctx["device"],
        )
    for part in ("val", "test"):
        pair = ctx["lmdbs"][part]
        keys, probs = score_cached(folders, pair, part)
        y = read_labels(pair.labels).astype(np.int8)[:, present]
        scores = Scores(
            keys,
            np.stack([p[:, 0] for p in probs], axis=1),
            y,
            [labels[j] for j in present],
            key_subjects(keys, ctx["index"]),
        )
        save_scores(scores_dir(ctx["work"], ctx["config"]) / f"onevsall_{part}.npz", scores)
    return mdir / "onevsall"


def train_stream(
    work: Path,
    profile: dict,
    config: str,
    stream: str,
    models: Path = Path("models"),
    device: str = "cpu",
) -> Path:
    """Train and score one stream of one configuration; returns the stream's model folder."""
    if stream not in STREAMS:
        raise FacsError(f"unknown stream '{stream}' (choose from {', '.join(STREAMS)})")
    kind = "flow" if stream == "flow" else "spatial"
    lmdbs = {p: find_lmdb(work, config, kind, p) for p in PARTS}
    labels = list(lmdbs["train"].manifest["labels"])
    ytrain = read_labels(lmdbs["train"].labels)
    _prevalence(work, config, labels, ytrain)
    index: Index = load_index(work / "index.json")
    ctx = {
        "work": work,
        "config": config,
        "labels": labels,
        "lmdbs": lmdbs,
        "index": index,
        "mdir": model_dir(models, profile, config),
        "settings": train_settings(profile, stream),
        "seed": int(profile.get("train", {}).get("seed", profile.get("lmdb", {}).get("seed", 0))),
        "device": device,
    }
    if stream == "onevsall":
        return _train_onevsall(ctx, ytrain)
    return _train_net_stream(ctx, stream)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--config", default="best", help="configuration (profile lmdb.configs)")
    parser.add_argument("--stream", required=True, choices=STREAMS)
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    print(describe(profile, "train"))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    t0 = time.perf_counter()
    out = train_stream(work, profile, args.config, args.stream, args.models, args.device)
    print(f"train-stream {args.config}/{args.stream}: {out} in {time.perf_counter() - t0:.0f} s")
    return 0
