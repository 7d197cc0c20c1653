"""One definition of a stream's input: for the test frames of the corpus, the tensor that
prediction feeds a net (from the .avi, through facs analyze's code) equals the record of the
test LMDB after the Data layer's TEST transform, exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facs.analysis.model import load_model
from facs.analysis.predict import _deploy, predict_video
from facs.caffe import caffe_pb2
from facs.caffe.data_layer import DataLayer
from facs.datasets.index import load_index
from facs.preprocess.records import StreamInput
from facs.training.standin import stand_in_model

CONFIG = "best"  # frame + median reference (6 channels), flow stride 3 (20 channels)


def _test_lmdb(work: Path, stream: str) -> tuple[dict, np.ndarray]:
    """The test part's records of a stream, through Caffe's Data layer in the TEST phase."""
    folder = work / "lmdb" / CONFIG
    manifest = json.loads((folder / f"test_{stream}.json").read_text())
    lp = caffe_pb2.LayerParameter(name="data", type="Data", top=["data"])
    lp.data_param.source = str(folder / f"test_{stream}")
    lp.data_param.batch_size = manifest["count"]
    lp.transform_param.mean_file = str(folder / manifest["mean"])
    lp.transform_param.crop_size = manifest["crop"]
    layer = DataLayer(lp, "TEST", folder, seed=0)
    try:
        (batch,) = layer.next()
    finally:
        layer.close()
    return manifest, batch.numpy()


@pytest.fixture(scope="module")
def fed(small_work, tmp_path_factory) -> dict:
    """What prediction feeds each net of a model made for the corpus' best configuration (its
    nets' weights do not matter; its means are the LMDBs'), per (clip, frame) of the test
    part's clips: {stream: {(clip, frame): C x 64 x 64 float32}}."""
    index = load_index(small_work / "index.json")
    manifests = {
        s: json.loads((small_work / "lmdb" / CONFIG / f"test_{s}.json").read_text())
        for s in ("spatial", "flow")
    }
    inputs = {s: StreamInput.from_json(m["input"]) for s, m in manifests.items()}
    folder = stand_in_model(
        tmp_path_factory.mktemp("model") / "corpus", index.labels, inputs, landmarks=False
    )
    for s, m in manifests.items():
        shutil.copyfile(small_work / "lmdb" / CONFIG / m["mean"], folder / s / "mean.binaryproto")
    model = load_model(folder)
    out: dict = {"spatial": {}, "flow": {}}
    for clip_id in manifests["spatial"]["clips"][:3]:
        clip = next(c for c in index.clips if c.id == clip_id)
        for s in ("spatial", "flow"):
            seen: list[torch.Tensor] = []

            def hook(module, args, kwargs, seen=seen):
                seen.append(next(iter(kwargs.values())).clone())

            net = _deploy(model, s).net  # the net prediction loads, hooked
            handle = net.register_forward_pre_hook(hook, with_kwargs=True)
            try:
                result = predict_video(index.video_path(clip), model, [s])
            finally:
                handle.remove()
            face = [f["face"] for f in result["per_frame"]]
            x = torch.cat(seen).numpy()
            frames = [t for t, ok in enumerate(face) if ok]
            assert len(frames) == len(x)
            for t, row in zip(frames, x, strict=True):
                out[s][(clip_id, t)] = row
    return out


@pytest.mark.parametrize("stream", ["spatial", "flow"])
def test_prediction_feeds_the_nets_the_lmdb_records(small_work, fed, stream):
    manifest, x = _test_lmdb(small_work, stream)
    compared = 0
    for (clip_id, t, _aug), row in zip(manifest["records"], x, strict=True):
        got = fed[stream].get((clip_id, t))
        if got is None:
            continue  # another clip, or a frame where dlib saw no face (prediction scores 0)
        assert got.shape == row.shape == (StreamInput.from_json(manifest["input"]).channels, 64, 64)
        np.testing.assert_array_equal(got, row, err_msg=f"{clip_id} frame {t}")
        compared += 1
    assert compared >= 30
