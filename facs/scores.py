"""`facs test-net`: score an LMDB split with a trained deploy net and its caffemodel.

The deploy net sees what Caffe's TEST-phase Data layer would give it: the stored CHW uint8
record, centre-cropped to the net's input size, minus the mean (the mean blob cropped at the
same offset, or per-channel values), times `scale`. Scores go to
`WORK/scores/<config>/<stream>_<part>.npz` with

    keys    (N,)   LMDB keys, record order           probs   (N, L) float32 probabilities
    labels  (N, L) uint8 ground truth                label_names (L,) AU codes
    subjects (N,)  subject of each record (when the index names it)

A one-vs-all net (2-way softmax) scores one label: column 1 of its softmax.

    facs test-net --deploy D --weights W --data WORK/lmdb/x --labels WORK/lmdb/x_labels \
                  --mean mean.npy --out scores.npz
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facs.errors import FacsError


def read_datum_lmdb(path: Path, want: str = "data") -> tuple[list[str], np.ndarray]:
    """All records of a Datum LMDB in key order: keys and an array (N x C x H x W uint8 for
    `data`, N x L float32 for `float_data`)."""
    import lmdb

    from facs.caffe import caffe_pb2

    path = Path(path)
    if not path.exists():
        raise FacsError(f"{path}: no such LMDB")
    keys, rows = [], []
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir())
    try:
        with env.begin() as txn:
            datum = caffe_pb2.Datum()
            for k, v in txn.cursor():
                datum.ParseFromString(v)
                keys.append(k.decode())
                if want == "data":
                    shape = (datum.channels, datum.height, datum.width)
                    rows.append(np.frombuffer(datum.data, np.uint8).reshape(shape))
                else:
                    rows.append(np.asarray(datum.float_data, np.float32))
    finally:
        env.close()
    if not rows:
        raise FacsError(f"{path}: LMDB holds no records")
    return keys, np.stack(rows)


def load_mean(path: str | Path | None) -> np.ndarray | None:
    """A mean file (.npy or .binaryproto) as C x H x W (or C,) float32; None passes through."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix == ".npy":
        mean = np.load(path).astype(np.float32)
    else:
        from facs.caffe.io import read_blobproto

        mean = np.asarray(read_blobproto(path), np.float32)
    return mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 else mean.reshape(-1)


def transform(batch: np.ndarray, crop: int | None, mean: np.ndarray | None, scale: float = 1.0):
    """Caffe TEST-phase transform of N x C x H x W uint8 -> float32 torch tensor."""
    import torch

    x = batch.astype(np.float32)
    h, w = x.shape[-2:]
    if mean is not None and mean.ndim == 3:
        x = (
            x - mean[None, :, :h, :w]
            if mean.shape[-2:] == (h, w)
            else x - mean.mean((1, 2))[None, :, None, None]
        )
    elif mean is not None:
        x = x - mean[None, :, None, None]
    if crop and (h > crop or w > crop):
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        x = x[..., y0 : y0 + crop, x0 : x0 + crop]
    if scale != 1.0:
        x = x * scale
    return torch.from_numpy(np.ascontiguousarray(x))


def net_probs(outputs: dict) -> np.ndarray:
    """The probability blob of a deploy net's outputs (`prob` if named so, else the only one);
    a 2-way softmax becomes its positive column."""
    if "prob" in outputs:
        t = outputs["prob"]
    elif len(outputs) == 1:
        t = next(iter(outputs.values()))
    else:
        raise FacsError(f"deploy net has several outputs {sorted(outputs)} and none named 'prob'")
    p = t.detach().float().cpu().numpy().reshape(len(t), -1)
    return p[:, 1:2] if p.shape[1] == 2 else p


def input_name(net) -> str:
    """Name of the deploy net's single Input blob."""
    if not net.input_names:
        raise FacsError(f"deploy net '{net.name}' has no Input layer")
    return net.input_names[0]


def score_array(
    net,
    images: np.ndarray,
    crop: int | None,
    mean: np.ndarray | None,
    scale: float = 1.0,
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Probabilities of `net` (deploy, TEST phase) for N x C x H x W uint8 records."""
    import torch

    name = input_name(net)
    out = []
    net.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = transform(images[i : i + batch], crop, mean, scale)
            out.append(net_probs(net.forward(**{name: x})))
            if progress:
                progress(len(x))
    return np.concatenate(out).astype(np.float32)


def load_net(deploy: str | Path, weights: str | Path):
    from facs.caffe.net import Net

    net = Net.from_prototxt(Path(deploy), "TEST")
    net.load_caffemodel(Path(weights))
    return net


def save_scores(path, keys, probs, labels, label_names, subjects=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if subjects is None else {"subjects": np.asarray(subjects, dtype=str)}
    np.savez(
        path,
        keys=np.asarray(keys, dtype=str),
        probs=np.asarray(probs, np.float32),
        labels=np.asarray(labels, np.uint8),
        label_names=np.asarray(label_names, dtype=str),
        **extra,
    )
    return path


def load_scores(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FacsError(f"{path}: no such scores file (run `facs test-net` first)")
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["label_names"] = [str(x) for x in d["label_names"]]
    return d


def subjects_of(keys: list[str], index_path: Path | None) -> np.ndarray | None:
    """Subject of each record, from the clip id inside the key and the index's clip table."""
    if index_path is None or not Path(index_path).is_file():
        return None
    clips = {c["id"]: str(c["subject"]) for c in json.loads(Path(index_path).read_text())["clips"]}
    out = []
    for k in keys:
        clip = k.split("_", 1)[1].rsplit("_", 1)[0] if "_" in k else k
        # keys are "{i:08d}_{clip_id}_{frame:05d}[_{aug}]": strip a trailing aug part if any
        if clip not in clips and "_" in clip:
            clip = clip.rsplit("_", 1)[0]
        out.append(clips.get(clip, ""))
    return np.asarray(out, dtype=str)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy", required=True, help="deploy.prototxt")
    parser.add_argument("--weights", required=True, help="trained .caffemodel")
    parser.add_argument("--data", required=True, help="LMDB of Datum records (frames or flow)")
    parser.add_argument("--labels", required=True, help="parallel label LMDB (float_data)")
    parser.add_argument("--mean", help="mean .npy or .binaryproto of the training split")
    parser.add_argument("--crop", type=int, help="centre crop size (default: the net's input)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--label-names", help="JSON file with a 'labels' list (e.g. index.json)")
    parser.add_argument("--index", help="WORK/index.json, to record each frame's subject")
    parser.add_argument("--column", type=int, help="one-vs-all: label column this net scores")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", required=True, help="output .npz")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    net = load_net(args.deploy, args.weights)
    keys, images = read_datum_lmdb(Path(args.data), "data")
    lkeys, labels = read_datum_lmdb(Path(args.labels), "float_data")
    if lkeys != keys:
        raise FacsError(f"{args.labels}: keys differ from {args.data}'s")
    names = [str(i) for i in range(labels.shape[1])]
    if args.label_names:
        names = json.loads(Path(args.label_names).read_text())["labels"]
    crop = args.crop or net_input_size(net)
    with tqdm(total=len(images), desc="test-net", unit="frame") as bar:
        probs = score_array(
            net, images, crop, load_mean(args.mean), args.scale, args.batch, bar.update
        )
    if args.column is not None:
        labels, names = labels[:, [args.column]], [names[args.column]]
    subjects = subjects_of(keys, Path(args.index) if args.index else None)
    out = save_scores(args.out, keys, probs, labels.astype(np.uint8), names, subjects)
    print(f"test-net: {len(keys)} records, {probs.shape[1]} outputs -> {out}")
    return 0


def net_input_size(net) -> int:
    """Spatial size of the deploy net's input (its last dim), for the centre crop."""
    return int(net.blob_shapes[input_name(net)][-1])
