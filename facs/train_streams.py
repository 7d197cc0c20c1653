"""`facs train-stream`: train one stream of a configuration on WORK's LMDBs and score it.

The prototxts a researcher edits live in `prototxt/<profile>/` (templates: their LMDB sources,
mean file, crop and output count are placeholders). This stage renders them for one
configuration into the model folder, with the real LMDB paths of WORK, trains with
`facs.caffe.train.train`, copies the final weights beside a deploy prototxt, and scores the
validation and test LMDBs into `WORK/scores/<config>/<stream>_{val,test}.npz`.

    models/<name>/<stream>/train_val.prototxt solver.prototxt deploy.prototxt
                           weights.caffemodel  mean.binaryproto mean.npy
                           snap_iter_N.caffemodel/.solverstate  snap_train.log/.csv
    models/<name>/onevsall/<code>/...   one net per label present in training

Streams: `spatial` (i) AN-Finetune, multi-label sigmoid; `onevsall` (ii) one 2-way softmax net
per label (initialised from the spatial net's weights where the profile says so); `flow` (iii)
the temporal net from scratch.

    facs train-stream --work work/quick --profile quick --config best --stream spatial
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from facs.caffe import caffe_pb2
from facs.errors import FacsError

STREAMS = ("spatial", "onevsall", "flow")
ROOT = Path(__file__).resolve().parents[1]
TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


# ---------------------------------------------------------------- settings


TEMPLATES = {"spatial": "alexnet_finetune", "onevsall": "onevsall", "flow": "flownet"}


def train_settings(profile: dict, stream: str) -> dict:
    """The profile's `train` section for a stream, with defaults: templates in
    prototxt/<profile>/<net>_{train_val,solver,deploy}.prototxt (net: TEMPLATES[stream])."""
    t = dict(profile.get("train", {}).get(stream, {}))
    base = t.get("prototxt_dir", f"prototxt/{profile.get('name', 'quick')}")
    for kind in ("train_val", "solver", "deploy"):
        t.setdefault(kind, f"{base}/{TEMPLATES[stream]}_{kind}.prototxt")
    return t


def _repo_path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() or p.exists() else ROOT / p


# ---------------------------------------------------------------- rendering


def _phase(layer) -> int | None:
    for rule in layer.include:
        if rule.HasField("phase"):
            return int(rule.phase)
    return None


def _is_label_layer(layer) -> bool:
    return any("label" in t for t in layer.top)


def last_inner_product(net: caffe_pb2.NetParameter):
    ips = [layer for layer in net.layer if layer.type == "InnerProduct"]
    if not ips:
        raise FacsError(f"net '{net.name}': no InnerProduct layer to size to the labels")
    return ips[-1]


def set_label_column(net: caffe_pb2.NetParameter, column: int, n_labels: int) -> None:
    """One-vs-all: the Slice layer on the label blob keeps `column` as its top `target`."""
    slices = [la for la in net.layer if la.type == "Slice" and "target" in la.top]
    if not slices:
        raise FacsError(f"net '{net.name}': one-vs-all needs a Slice layer with top 'target'")
    layer = slices[0]
    del layer.top[:]
    layer.slice_param.ClearField("slice_point")
    layer.slice_param.axis = 1
    points, tops = [], []
    if column > 0:
        points.append(column)
        tops.append("label_before")
    tops.append("target")
    if column < n_labels - 1:
        points.append(column + 1)
        tops.append("label_after")
    if n_labels == 1:
        # Nothing to slice: a Slice with one top is Caffe's identity.
        points = []
    layer.slice_param.slice_point.extend(points)
    layer.top.extend(tops)
    # The columns around `target` feed nothing: a Silence layer consumes them, as in Caffe,
    # so they do not become net outputs (and fill the log with one line per label).
    rest = [t for t in tops if t != "target"]
    layers = [la for la in net.layer if la.name != "label_silence"]
    if rest:
        silence = caffe_pb2.LayerParameter(name="label_silence", type="Silence", bottom=rest)
        silence.include.extend(layer.include)
        silence.exclude.extend(layer.exclude)
        layers.insert(layers.index(layer) + 1, silence)
    del net.layer[:]
    net.layer.extend(layers)


def render_train_val(
    template: Path,
    sources: dict[str, tuple[Path, Path]],
    mean_file: Path | None,
    crop: int | None,
    num_output: int,
    batch: dict[str, int] | None = None,
) -> caffe_pb2.NetParameter:
    """Template net with WORK's LMDBs: sources = {"TRAIN": (data, labels), "TEST": (...)}."""
    from facs.caffe.io import read_net_prototxt

    net = read_net_prototxt(template)
    for layer in net.layer:
        if layer.type != "Data":
            continue
        phase = "TEST" if _phase(layer) == TEST else "TRAIN"
        data, labels = sources[phase]
        layer.data_param.source = str((labels if _is_label_layer(layer) else data).resolve())
        layer.data_param.backend = caffe_pb2.DataParameter.LMDB
        if batch and phase in batch:
            layer.data_param.batch_size = int(batch[phase])
        if not _is_label_layer(layer):
            tp = layer.transform_param
            if mean_file is not None:
                # Relative paths stay relative: they resolve against the net file's folder.
                tp.mean_file = str(mean_file)
                tp.ClearField("mean_value")
            if crop:
                tp.crop_size = int(crop)
    last_inner_product(net).inner_product_param.num_output = num_output
    return net


def render_deploy(template: Path, channels: int, crop: int, num_output: int):
    from facs.caffe.io import read_net_prototxt

    net = read_net_prototxt(template)
    shape = None
    for layer in net.layer:
        if layer.type == "Input":
            shape = layer.input_param.shape[0]
    if shape is None:
        if not len(net.input_shape):
            raise FacsError(f"{template}: a deploy net needs an Input layer")
        shape = net.input_shape[0]
    del shape.dim[:]
    shape.dim.extend([1, channels, crop, crop])
    last_inner_product(net).inner_product_param.num_output = num_output
    return net


def render_solver(template: Path, net_path: Path, prefix: Path, overrides: dict):
    from facs.caffe.io import read_solver_prototxt

    sp = read_solver_prototxt(template)
    for f in ("train_net", "test_net", "net_param", "train_net_param"):
        sp.ClearField(f)
    sp.net = str(net_path.resolve())
    sp.snapshot_prefix = str(prefix.resolve())
    for key, value in overrides.items():
        field = sp.DESCRIPTOR.fields_by_name.get(key)
        if field is None:
            raise FacsError(f"profile train settings: solver has no field '{key}'")
        if hasattr(getattr(sp, key), "extend"):  # a repeated field
            sp.ClearField(key)
            getattr(sp, key).extend(value if isinstance(value, list) else [value])
        else:
            setattr(sp, key, value)
    return sp


# ---------------------------------------------------------------- WORK's LMDBs


def find_lmdb(work: Path, config: str, stream: str, part: str) -> dict:
    """The LMDB pair of a (configuration, stream kind, split part) from its manifest
    WORK/lmdb/<config>/<part>_<stream>.json (facs.lmdb_build):
    {"data": Path, "labels": Path, "mean": Path | None, "manifest": dict}."""
    folder = Path(work) / "lmdb" / config
    mpath = folder / f"{part}_{stream}.json"
    if not mpath.is_file():
        raise FacsError(f"{mpath}: no such LMDB manifest (run scripts/05_lmdb.sh first)")
    manifest = json.loads(mpath.read_text())
    mean = folder / manifest["mean"] if manifest.get("mean") else None
    return {
        "data": folder / manifest["data"],
        "labels": folder / manifest["labels_db"],
        "mean": mean if mean is not None and mean.is_file() else None,
        "manifest": manifest,
    }


def record_subjects(work: Path, manifest: dict) -> np.ndarray:
    """Subject of every record of an LMDB, in record order (manifest records + index)."""
    from facs.workdir import load_index

    subject = {c["id"]: str(c["subject"]) for c in load_index(work)["clips"]}
    return np.asarray([subject.get(r[0], "") for r in manifest["records"]], dtype=str)


# ---------------------------------------------------------------- training


def _write(path: Path, message) -> Path:
    from facs.caffe.io import write_prototxt

    path.parent.mkdir(parents=True, exist_ok=True)
    write_prototxt(path, message)
    return path


def train_one(
    settings: dict,
    out: Path,
    lmdbs: dict[str, dict],
    num_output: int,
    column: int | None = None,
    n_labels: int = 0,
    init_weights: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Render, train and package one net into `out`; returns its model.json stream entry."""
    from facs.caffe.train import train

    out.mkdir(parents=True, exist_ok=True)
    train_l, val_l = lmdbs["train"], lmdbs["val"]
    shape = train_l["manifest"]["shape"]  # C, H, W of the stored records
    channels = int(shape[0])
    # The net's input size: the profile's, else the LMDB's crop (the Data layer crops to it).
    crop = int(settings.get("crop") or train_l["manifest"].get("crop") or min(shape[1:]))
    mean = None
    if train_l.get("mean") is not None:
        mean = out / "mean.binaryproto"
        shutil.copyfile(train_l["mean"], mean)
        npy = Path(train_l["mean"]).parent / train_l["manifest"].get("mean_npy", "")
        if npy.is_file():
            shutil.copyfile(npy, out / "mean.npy")
    sources = {
        "TRAIN": (train_l["data"], train_l["labels"]),
        "TEST": (val_l["data"], val_l["labels"]),
    }
    # The mean sits beside the rendered net: a relative path keeps the caffemodel free of
    # machine paths (two identical runs give identical files).
    net = render_train_val(
        _repo_path(settings["train_val"]),
        sources,
        Path(mean.name) if mean is not None else None,
        crop,
        num_output,
        settings.get("batch"),
    )
    if column is not None:
        set_label_column(net, column, n_labels)
    overrides = dict(settings.get("solver_overrides", {}))
    overrides.setdefault("random_seed", seed)
    sp = render_solver(
        _repo_path(settings["solver"]), out / "train_val.prototxt", out / "snap", overrides
    )
    deploy = render_deploy(_repo_path(settings["deploy"]), channels, crop, num_output)
    scale = 1.0
    for layer in net.layer:
        if layer.type == "Data" and not _is_label_layer(layer):
            if layer.transform_param.HasField("scale"):
                scale = float(layer.transform_param.scale)
    # Same prototxts, same LMDBs, same initial weights, same seed: the trained net is the same.
    from google.protobuf import text_format

    h = hashlib.sha256()
    for m in (net, sp, deploy):
        h.update(text_format.MessageToString(m).encode())
    for part in ("train", "val"):
        h.update(str(lmdbs[part]["manifest"].get("fingerprint")).encode())
    if init_weights is not None:
        h.update(hashlib.sha256(Path(init_weights).read_bytes()).hexdigest().encode())
    h.update(f"{seed} {device}".encode())
    fingerprint = h.hexdigest()[:16]
    done = out / "stream.json"
    if done.is_file() and (out / "weights.caffemodel").is_file():
        old = json.loads(done.read_text())
        if old.get("fingerprint") == fingerprint:
            print(f"train-stream: {out} is up to date (fingerprint {fingerprint}), skipped")
            return old
    done.unlink(missing_ok=True)
    tv = _write(out / "train_val.prototxt", net)
    solver = _write(out / "solver.prototxt", sp)
    _write(out / "deploy.prototxt", deploy)
    t0 = time.perf_counter()
    final = train(solver, weights=init_weights, device=device, seed=seed)
    seconds = time.perf_counter() - t0
    shutil.copyfile(final, out / "weights.caffemodel")
    assert tv.is_file()
    return {
        "deploy": "deploy.prototxt",
        "weights": "weights.caffemodel",
        "mean": "mean.npy"
        if (out / "mean.npy").is_file()
        else ("mean.binaryproto" if mean else None),
        "train_seconds": round(seconds, 1),
        "iterations": int(sp.max_iter),
        "fingerprint": fingerprint,
        "input": {"channels": channels, "size": int(shape[1]), "crop": crop, "scale": scale},
    }


def score_part(
    stream_dirs: list[Path], lmdb: dict, batch: int = 256
) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Keys, per net probabilities and labels of one LMDB split under the packaged nets in
    stream_dirs, in one pass: the records are read and transformed once for all of them (the
    one-vs-all nets share their input; each net's own mean and input settings are checked)."""
    from tqdm import tqdm

    from facs.scores import load_mean, load_net, net_probs, read_datum_lmdb, transform

    keys, images = read_datum_lmdb(lmdb["data"], "data")
    lkeys, labels = read_datum_lmdb(lmdb["labels"], "float_data")
    if lkeys != keys:
        raise FacsError(f"{lmdb['labels']}: keys differ from {lmdb['data']}'s")
    groups: dict[tuple, list[int]] = {}  # input settings -> nets that take them
    nets, setups = [], []
    for i, d in enumerate(stream_dirs):
        nets.append(load_net(d / "deploy.prototxt", d / "weights.caffemodel"))
        mean_path = d / "mean.npy"
        mean = load_mean(mean_path if mean_path.is_file() else None)
        inp = json.loads((d / "stream.json").read_text())["input"]
        setups.append((inp.get("crop"), float(inp.get("scale", 1.0)), mean))
        digest = None if mean is None else hashlib.sha256(mean.tobytes()).hexdigest()
        groups.setdefault((inp.get("crop"), setups[-1][1], digest), []).append(i)
    import torch

    from facs.scores import input_name

    probs: list[list[np.ndarray]] = [[] for _ in nets]
    name = "onevsall" if len(nets) > 1 else stream_dirs[0].name
    with torch.no_grad(), tqdm(total=len(keys), desc=f"score {name}", unit="frame") as bar:
        for net in nets:
            net.eval()
        for b in range(0, len(images), batch):
            for members in groups.values():
                crop, scale, mean = setups[members[0]]
                x = transform(images[b : b + batch], crop, mean, scale)
                for i in members:
                    out = nets[i].forward(**{input_name(nets[i]): x})
                    probs[i].append(net_probs(out))
            bar.update(min(batch, len(images) - b))
    return keys, [np.concatenate(p).astype(np.float32) for p in probs], labels.astype(np.uint8)


def score_cached(stream_dirs: list[Path], lmdb: dict, part: str):
    """score_part, kept in <stream_dir>/scores_<part>.npz for the same net and the same LMDB;
    only the nets without such a file are scored. Returns keys, [probs per net], labels."""
    found: dict[int, np.ndarray] = {}
    keys = y = None
    fps = []
    for i, d in enumerate(stream_dirs):
        fp = json.loads((d / "stream.json").read_text()).get("fingerprint", "")
        fps.append(f"{fp}:{lmdb['manifest'].get('fingerprint')}")
        cache = d / f"scores_{part}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                if str(z["fingerprint"]) == fps[-1]:
                    keys, found[i], y = [str(k) for k in z["keys"]], z["probs"], z["labels"]
    todo = [i for i in range(len(stream_dirs)) if i not in found]
    if todo:
        keys, probs, y = score_part([stream_dirs[i] for i in todo], lmdb)
        for i, p in zip(todo, probs, strict=True):
            found[i] = p
            np.savez(
                stream_dirs[i] / f"scores_{part}.npz",
                keys=np.asarray(keys, dtype=str),
                probs=p,
                labels=y,
                fingerprint=np.asarray(fps[i]),
            )
    return keys, [found[i] for i in range(len(stream_dirs))], y


# ---------------------------------------------------------------- one stream of a configuration


def model_dir(models: Path, profile: dict, config: str) -> Path:
    return Path(models) / f"{profile.get('name', 'quick')}-{config}"


def config_options(profile: dict, config: str) -> dict:
    configs = profile.get("lmdb", {}).get("configs", {})
    if config not in configs:
        raise FacsError(
            f"{profile.get('_path')}: no configuration '{config}' "
            f"(known: {', '.join(configs) or 'none'})"
        )
    return configs[config]


def input_settings(profile: dict, config: str, stream: str, entry: dict) -> dict:
    """Everything prediction needs to rebuild the net's input from a video (model.json)."""
    kind = "flow" if stream == "flow" else "frame"
    opts = config_options(profile, config).get("flow" if kind == "flow" else "spatial", {})
    inp = {"kind": kind, **entry["input"], **opts, "faces": profile.get("faces", {})}
    if kind == "flow":
        inp["flow"] = profile.get("flow", {})
    return inp


def _save_prevalence(work: Path, config: str, labels: list[str], train_labels: dict) -> None:
    from facs.scores import read_datum_lmdb

    _, y = read_datum_lmdb(train_labels["labels"], "float_data")
    prev = {c: round(float(v), 6) for c, v in zip(labels, (y > 0.5).mean(0), strict=True)}
    path = work / "scores" / config / "train_prevalence.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": int(len(y)), "prevalence": prev}, indent=1) + "\n")


def pretrained(settings: dict) -> Path | None:
    """The profile's `weights` for a stream (e.g. bvlc_alexnet.caffemodel for the paper's
    AN-Finetune), or None; a missing file is said loudly and training starts from the fillers."""
    if not settings.get("weights"):
        return None
    path = _repo_path(settings["weights"])
    if path.is_file():
        return path
    bar = "!" * 78
    print(
        f"{bar}\ntrain-stream: pretrained weights {path} not found "
        "(scripts/fetch_alexnet.sh fetches them where the internet is reachable);\n"
        f"TRAINING FROM RANDOM INITIALISATION instead: this is not the report's fine-tuning.\n{bar}"
    )
    return None


def train_stream(
    work: Path,
    profile: dict,
    config: str,
    stream: str,
    models: Path = Path("models"),
    device: str = "cpu",
) -> Path:
    """Train and score one stream of one configuration; returns the stream's model folder."""
    from facs.scores import save_scores

    if stream not in STREAMS:
        raise FacsError(f"unknown stream '{stream}' (choose from {', '.join(STREAMS)})")
    settings = train_settings(profile, stream)
    seed = int(profile.get("train", {}).get("seed", profile.get("lmdb", {}).get("seed", 0)))
    kind = "flow" if stream == "flow" else "spatial"
    lmdbs = {p: find_lmdb(work, config, kind, p) for p in ("train", "val", "test")}
    labels = list(lmdbs["train"]["manifest"]["labels"])
    mdir = model_dir(models, profile, config)
    _save_prevalence(work, config, labels, lmdbs["train"])
    scores_dir = work / "scores" / config
    if stream != "onevsall":
        out = mdir / stream
        init = pretrained(settings)
        entry = train_one(
            settings, out, lmdbs, len(labels), init_weights=init, seed=seed, device=device
        )
        entry["input"] = input_settings(profile, config, stream, entry)
        (out / "stream.json").write_text(json.dumps(entry, indent=1) + "\n")
        for part in ("val", "test"):
            keys, (probs,), y = score_cached([out], lmdbs[part], part)
            save_scores(
                scores_dir / f"{stream}_{part}.npz",
                keys,
                probs,
                y,
                labels,
                record_subjects(work, lmdbs[part]["manifest"]),
            )
        return out
    # One-vs-all: a 2-way net per label that occurs in the training frames.
    from facs.scores import read_datum_lmdb

    _, ytrain = read_datum_lmdb(lmdbs["train"]["labels"], "float_data")
    present = [j for j in range(len(labels)) if ytrain[:, j].sum() > 0]
    if settings.get("labels"):
        # A cap for quick runs and tests: the N most frequent labels (ties: label order).
        keep = sorted(present, key=lambda j: -ytrain[:, j].sum())[: int(settings["labels"])]
        present = sorted(keep)
    init = pretrained(settings)
    if settings.get("init_from"):
        init = mdir / settings["init_from"] / "weights.caffemodel"
        if not init.is_file():
            raise FacsError(
                f"{init}: one-vs-all starts from the {settings['init_from']} net; "
                "train that stream first"
            )
    nets, cols = {}, {"val": [], "test": []}
    keys_of: dict[str, list[str]] = {}
    ys: dict[str, np.ndarray] = {}
    for j in present:
        code = labels[j]
        out = mdir / "onevsall" / code
        entry = train_one(
            settings,
            out,
            lmdbs,
            2,
            column=j,
            n_labels=len(labels),
            init_weights=init,
            seed=seed,
            device=device,
        )
        (out / "stream.json").write_text(json.dumps(entry, indent=1) + "\n")
        nets[code] = {
            "deploy": f"{code}/deploy.prototxt",
            "weights": f"{code}/weights.caffemodel",
            "column": j,
            "train_seconds": entry["train_seconds"],
        }
    first = entry
    dirs = [mdir / "onevsall" / labels[j] for j in present]
    for part in ("val", "test"):
        keys_of[part], probs, ys[part] = score_cached(dirs, lmdbs[part], part)
        cols[part] = [p[:, 0] for p in probs]
    summary = {
        "nets": nets,
        "mean": f"{labels[present[0]]}/{first['mean']}" if first.get("mean") else None,
        "input": input_settings(profile, config, stream, first),
        "labels": [labels[j] for j in present],
    }
    (mdir / "onevsall" / "stream.json").write_text(json.dumps(summary, indent=1) + "\n")
    codes = [labels[j] for j in present]
    for part in ("val", "test"):
        save_scores(
            scores_dir / f"onevsall_{part}.npz",
            keys_of[part],
            np.stack(cols[part], axis=1),
            ys[part][:, present],
            codes,
            record_subjects(work, lmdbs[part]["manifest"]),
        )
    return mdir / "onevsall"


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from facs.profile import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument("--config", default="best", help="configuration (profile lmdb.configs)")
    parser.add_argument("--stream", required=True, choices=STREAMS)
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    import torch

    from facs.profile import default_work, describe, load_profile

    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    print(describe(profile, "train"))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    t0 = time.perf_counter()
    out = train_stream(work, profile, args.config, args.stream, args.models, args.device)
    print(f"train-stream {args.config}/{args.stream}: {out} in {time.perf_counter() - t0:.0f} s")
    return 0
