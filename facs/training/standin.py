"""A stand-in model: the quick profile's spatial and flow nets with random weights, packaged as a
model folder exactly as `facs train-stream` and `facs fuse` package trained ones (same layers,
input records and sizes, so the same speed and the same code path; no training needed).
Tests and benchmarks use it where the numbers the nets give do not matter.

    stand_in_model(Path("/tmp/m"), labels=["1", "12", "25"])   # -> /tmp/m/model.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facs.analysis.model import Model, StreamSpec, write_model, write_stream
from facs.caffe.io import write_blobproto, write_prototxt
from facs.caffe.net import Net
from facs.preprocess.records import StreamInput
from facs.profile import load_profile
from facs.training.render import ROOT, render_deploy

TEMPLATES = {"spatial": "alexnet_finetune_deploy.prototxt", "flow": "flownet_deploy.prototxt"}


def quick_inputs(config: str = "best") -> dict[str, StreamInput]:
    """The quick profile's stream inputs of a configuration (best: median reference, flow
    stride 3)."""
    profile = load_profile("quick")
    conf = profile["lmdb"]["configs"][config]
    return {
        s: StreamInput.for_stream(s, conf[s], profile["faces"], profile["flow"])
        for s in ("spatial", "flow")
    }


def stand_in_stream(folder: Path, inp: StreamInput, n_labels: int, seed: int) -> StreamSpec:
    """One stream folder: the quick deploy net for `inp`, random weights, a constant mean."""
    folder.mkdir(parents=True, exist_ok=True)
    template = TEMPLATES["flow" if inp.kind == "flow" else "spatial"]
    crop = inp.faces.size - 8
    deploy = render_deploy(ROOT / "prototxt" / "quick" / template, inp.channels, crop, n_labels)
    write_prototxt(folder / "deploy.prototxt", deploy)
    torch.manual_seed(seed)
    Net(deploy, "TEST").save_caffemodel(folder / "weights.caffemodel")
    write_blobproto(folder / "mean.binaryproto", np.full((1, *inp.shape), 100.0, np.float32))
    spec = StreamSpec(
        kind="cnn",
        folder=folder.name,
        deploy="deploy.prototxt",
        weights="weights.caffemodel",
        mean="mean.binaryproto",
        input=inp,
        crop=crop,
    )
    write_stream(folder, spec)
    return spec


def stand_in_model(
    folder: Path,
    labels: list[str],
    inputs: dict[str, StreamInput] | None = None,
    landmarks: bool = True,
    seed: int = 0,
) -> Path:
    """A model folder with random-weight CNN streams (default: the quick `best` inputs) and,
    with `landmarks`, the landmark rules; fused by plain averaging."""
    inputs = inputs or quick_inputs()
    streams = {
        name: stand_in_stream(Path(folder) / name, inp, len(labels), seed + i)
        for i, (name, inp) in enumerate(inputs.items())
    }
    if landmarks:
        streams["geometry"] = StreamSpec(kind="landmarks", method="rules")
    model = Model(
        name=Path(folder).name,
        labels=list(labels),
        streams=streams,
        fusion={"method": "average", "streams": list(streams)},
        thresholds={c: 0.5 for c in labels},
        created="2026-01-01T00:00:00+00:00",
        description="stand-in: quick nets with random weights (for tests and benchmarks)",
    )
    return write_model(model, folder).parent
