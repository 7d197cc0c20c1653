"""A trained deploy net at work: the one runtime that scores records with a caffemodel.

    net = DeployNet.load("deploy.prototxt", "weights.caffemodel", "mean.binaryproto",
                         shape=(6, 72, 72), crop=64)
    probs = net.score(records)            # N x C x H x W uint8 -> N x K float32

The net sees what Caffe's TEST-phase Data layer gives it: the stored record, centre-cropped
to the net's input, minus the mean file, times `scale` — computed by the Data layer's own
`Transform` (facs.caffe.data_layer), so training, `facs test-net`, evaluation and prediction
feed a net the very same tensors. The net's probabilities are its `prob` blob (or its only
output); a 2-way softmax (a one-vs-all net) gives its positive column.
`score_lmdb` scores every record of an LMDB with one or more nets in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facs.caffe import caffe_pb2
from facs.caffe.data_layer import Transform
from facs.caffe.lmdb import LmdbRecords
from facs.caffe.net import Net
from facs.errors import FacsError

BATCH = 256


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


class DeployNet:
    """A deploy net with its weights and the TEST-phase transform of its input records."""

    def __init__(self, net: Net, transform: Transform, source: str):
        if not net.input_names:
            raise FacsError(f"{source}: deploy net '{net.name}' has no Input layer")
        self.net = net.eval()
        self.transform = transform
        self.input = net.input_names[0]
        self.source = source

    @classmethod
    def load(
        cls,
        deploy: str | Path,
        weights: str | Path,
        mean: str | Path | None,
        shape: tuple[int, int, int],
        crop: int | None = None,
        scale: float = 1.0,
    ) -> DeployNet:
        """The net of `deploy` with `weights`, for records of `shape` (C, H, W) centre-cropped
        to `crop` (default: the net's input size) minus the `mean` .binaryproto, times scale."""
        net = Net.from_prototxt(Path(deploy), "TEST")
        net.load_caffemodel(Path(weights))
        tp = caffe_pb2.TransformationParameter(scale=float(scale))
        if mean is not None:
            tp.mean_file = str(Path(mean).resolve())
        if net.input_names:
            crop = crop or int(net.blob_shapes[net.input_names[0]][-1])
        if crop and crop < max(shape[1:]):
            tp.crop_size = int(crop)
        transform = Transform(tp, "TEST", tuple(shape), Path(deploy).parent, str(deploy))
        return cls(net, transform, str(deploy))

    def probs(self, records: np.ndarray) -> np.ndarray:
        """Probabilities of one batch of N x C x H x W uint8 records."""
        x = torch.from_numpy(np.ascontiguousarray(self.transform.test_batch(records)))
        with torch.no_grad():
            return net_probs(self.net(**{self.input: x}))

    def score(
        self,
        records: np.ndarray,
        batch: int = BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Probabilities of N x C x H x W uint8 records, `batch` at a time."""
        out = []
        for i in range(0, len(records), batch):
            out.append(self.probs(records[i : i + batch]))
            if progress:
                progress(len(out[-1]))
        return np.concatenate(out).astype(np.float32)


def score_lmdb(
    nets: list[DeployNet],
    data: str | Path,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], list[np.ndarray]]:
    """Keys and each net's probabilities of every record of a data LMDB, in one pass: the
    records are read once, and transformed once for the nets that share a transform."""
    records = LmdbRecords(Path(data))
    try:
        keys = [k.decode("ascii", "replace") for k in records.keys]
        groups: dict[bytes, list[int]] = {}
        for i, n in enumerate(nets):
            groups.setdefault(_transform_key(n.transform), []).append(i)
        probs: list[list[np.ndarray]] = [[] for _ in nets]
        for b in range(0, len(records), batch):
            chunk = np.stack([records.array(j) for j in range(b, min(b + batch, len(records)))])
            for members in groups.values():
                x = torch.from_numpy(
                    np.ascontiguousarray(nets[members[0]].transform.test_batch(chunk))
                )
                with torch.no_grad():
                    for i in members:
                        probs[i].append(net_probs(nets[i].net(**{nets[i].input: x})))
            if progress:
                progress(len(chunk))
    finally:
        records.close()
    return keys, [np.concatenate(p).astype(np.float32) for p in probs]


def _transform_key(t: Transform) -> bytes:
    mean = b"" if t.mean is None else np.ascontiguousarray(t.mean).tobytes()
    return repr((t.crop, t.scale, t.out_hw, t.mean_cropped)).encode() + mean
