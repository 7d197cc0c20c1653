"""facs.analysis.predict with CNN streams: a tiny model folder built from the quick deploy
prototxts with random weights (no trained model needed), the same code path as `facs analyze`
and the web demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facs.analysis.model import StreamSpec, load_model
from facs.analysis.predict import predict_video
from facs.errors import FacsError
from facs.preprocess.records import FaceParams
from facs.training.standin import stand_in_model

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["1", "4", "12", "14", "25"]  # AU14 has no geometry rule
FACES = {
    "every": 10,
    "scale_factor": 1.1,
    "min_neighbors": 5,
    "min_size": 30,
    "margin": 0.0,
    "size": 72,
    "mask_axes": [0.4, 0.5],
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The quick best-configuration nets with random weights, plus the landmark rules."""
    return stand_in_model(tmp_path_factory.mktemp("models") / "tiny", LABELS)


def _head(src: Path, out: Path, n: int) -> Path:
    """The first n frames of a clip as MJPG .avi (short clips keep the CNN tests fast)."""
    import cv2

    from facs.video import probe, read_frames

    info = probe(src)
    w = cv2.VideoWriter(
        str(out), cv2.VideoWriter_fourcc(*"MJPG"), info.fps, (info.width, info.height)
    )
    for i, frame in enumerate(read_frames(src)):
        if i == n:
            break
        w.write(frame)
    w.release()
    return out


@pytest.fixture(scope="module")
def short_clip(examples_dir, tmp_path_factory) -> Path:
    """The first 30 frames of single_face.mp4."""
    return _head(examples_dir / "single_face.mp4", tmp_path_factory.mktemp("clip") / "s.avi", 30)


@pytest.fixture(scope="module")
def runs(tiny_model, short_clip) -> dict:
    """predict_video with all streams (progress recorded) and with each stream alone."""
    model = load_model(tiny_model)
    seen: list = []
    out = {"all": predict_video(short_clip, model, progress=lambda d, t: seen.append((d, t)))}
    out["progress"] = seen
    for s in ("spatial", "flow", "geometry"):
        out[s] = predict_video(short_clip, model, [s])
    return out


def _probs(result: dict) -> np.ndarray:
    return np.array([f["probs"] for f in result["per_frame"]])


def test_all_streams_fused_per_frame(runs):
    r = runs["all"]
    assert r["streams"] == ["spatial", "flow", "geometry"] and r["labels"] == LABELS
    probs = _probs(r)
    assert probs.shape == (30, 5) and np.isfinite(probs).all()
    assert (probs >= 0).all() and (probs <= 1).all()
    seen = runs["progress"]
    assert seen[-1][0] == seen[-1][1]
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False))
    assert len(r["top5"]) == 5 and set(r["clip"]) == set(LABELS)


def test_fusion_is_the_average_of_the_streams(runs):
    one = {s: _probs(runs[s]) for s in ("spatial", "flow", "geometry")}
    both = _probs(runs["all"])
    j = LABELS.index("14")  # no geometry rule: the average of the CNN streams only
    np.testing.assert_allclose(
        both[:, j], (one["spatial"][:, j] + one["flow"][:, j]) / 2, atol=2e-4
    )
    j = LABELS.index("12")
    np.testing.assert_allclose(both[:, j], sum(one[s][:, j] for s in one) / 3, atol=2e-4)
    # the CNN streams see different inputs per frame: their outputs vary over the clip
    assert one["spatial"].std(0).max() > 1e-4 and one["flow"].std(0).max() > 1e-4


def test_spatial_stream_matches_the_lmdb_record_recipe(tiny_model, short_clip, runs):
    """Frame t's input: crop (Haar clip box as the faces stage finds it, mask) + (crop - clip
    median + 128), minus the mean, centre crop: what the deploy runtime scores."""
    from facs.caffe.deploy import DeployNet
    from facs.preprocess.records import crop_clip, detect_clip_box, median_reference, with_reference
    from facs.video import read_all

    frames = read_all(short_clip)
    params = FaceParams.from_json(FACES)
    box = detect_clip_box(frames, params).box
    crops = crop_clip(frames, box, params)
    med = median_reference(crops)
    recs = np.stack([with_reference(c, med).transpose(2, 0, 1) for c in crops[:8]])
    net = DeployNet.load(
        tiny_model / "spatial/deploy.prototxt",
        tiny_model / "spatial/weights.caffemodel",
        tiny_model / "spatial/mean.binaryproto",
        (6, 72, 72),
    )
    np.testing.assert_allclose(_probs(runs["spatial"])[:8], net.probs(recs), atol=2e-4)


def test_no_face_gives_zero_everywhere(tiny_model, examples_dir, tmp_path):
    clip = _head(examples_dir / "no_face.mp4", tmp_path / "n.avi", 20)
    r = predict_video(clip, load_model(tiny_model), ["spatial", "flow"])
    assert r["faces"] == 0 and r["top5"] == []
    assert all(not f["face"] and max(f["probs"]) == 0 for f in r["per_frame"])


def test_model_folder_errors(tmp_path):
    with pytest.raises(FacsError, match="not a model folder"):
        load_model(tmp_path)
    stream = {"kind": "cnn", "deploy": "missing.prototxt", "weights": "w.caffemodel",
              "input": {"kind": "frame"}}  # fmt: skip
    spec = {"format": "facs-model/2", "labels": ["1"], "streams": {"spatial": stream}}
    (tmp_path / "model.json").write_text(json.dumps(spec))
    with pytest.raises(FacsError, match="missing.prototxt"):
        load_model(tmp_path)
    # a model.json of another (or no) format version: one clear line
    (tmp_path / "model.json").write_text(json.dumps({**spec, "format": "facs-model/1"}))
    with pytest.raises(FacsError, match="model format facs-model/1; this facs reads facs-model/2"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({**spec, "thresholds": {"1": "high"}}))
    with pytest.raises(FacsError, match="thresholds must be numbers"):
        load_model(tmp_path)
    assert load_model("geometry").streams == {"geometry": StreamSpec("landmarks", method="rules")}


def test_learned_geometry_stream_from_a_model_folder(tmp_path, short_clip):
    """A learned landmark stream in model.json: the classifier's labels are aligned to the
    model's (a label it lacks is covered by no stream: 0)."""
    from facs.analysis import geometry as G

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(G.INPUT_NAMES))).astype(np.float32)
    y = (x[:, [0, 1]] > 0).astype(np.uint8)
    (tmp_path / "geometry").mkdir()
    G.LearnedGeometry.fit(x, y, ["12", "25"]).save(tmp_path / "geometry" / "classifier.json")
    geometry = {"kind": "landmarks", "folder": "geometry", "method": "learned",
                "classifier": "classifier.json"}  # fmt: skip
    spec = {
        "format": "facs-model/2",
        "name": "learned",
        "labels": ["12", "14", "25"],
        "streams": {"geometry": geometry},
    }
    (tmp_path / "model.json").write_text(json.dumps(spec))
    r = predict_video(short_clip, load_model(tmp_path))
    probs = np.array([f["probs"] for f in r["per_frame"]])
    assert probs.shape == (30, 3) and np.isfinite(probs).all()
    assert (probs[:, 1] == 0).all()  # AU14: no stream covers it
    assert probs[:, [0, 2]].std() > 0


def test_two_threads_at_once(short_clip):
    """dlib's models are per thread: concurrent analyses (a threaded server) agree, no crash."""
    import threading

    model = load_model("geometry")
    out: dict = {}

    def go(k: int) -> None:
        out[k] = _probs(predict_video(short_clip, model))

    threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2
    np.testing.assert_array_equal(out[0], out[1])
