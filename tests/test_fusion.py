"""Fusion methods: averaging, validation-weighted averaging, learned (logistic regression, SVM)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facs.errors import FacsError
from facs.evaluation.metrics import evaluate_scores
from facs.training.fusion import fit_fusion, fuse


def _streams(n=600, L=3, seed=0):
    """Two noisy streams: 'spatial' reliable on label 0, 'flow' on label 1, both on label 2."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, L)) < 0.3).astype(np.uint8)
    noise_good, noise_bad = 0.6, 3.0

    def stream(good):
        z = np.where(y == 1, 1.5, -1.5) + rng.normal(0, 1, y.shape) * np.array(
            [noise_good if g else noise_bad for g in good]
        )
        return 1 / (1 + np.exp(-z))

    return y, {"spatial": stream([1, 0, 1]), "flow": stream([0, 1, 1])}


def test_average_and_weighted():
    a = np.array([[0.2, 0.8]])
    b = np.array([[0.6, 0.4]])
    assert fuse({"spatial": a, "flow": b}, {"method": "average"}) == pytest.approx(
        np.array([[0.4, 0.6]])
    )
    spec = {
        "method": "weighted",
        "streams": ["spatial", "flow"],
        "weights": {"spatial": 0.75, "flow": 0.25},
    }
    assert fuse({"spatial": a, "flow": b}, spec) == pytest.approx(np.array([[0.3, 0.7]]))
    # A missing stream: the weights renormalise over those present.
    assert fuse({"spatial": a}, spec) == pytest.approx(a)
    with pytest.raises(FacsError):
        fuse({}, spec)


def test_learned_fusion_beats_either_stream_and_is_json():
    y, val = _streams(seed=0)
    yt, test = _streams(seed=1)
    groups = np.repeat(np.arange(12), 50)
    f1 = {
        s: evaluate_scores(yt, p, ["a", "b", "c"])["summary"]["f1_macro"] for s, p in test.items()
    }
    for method in ("logreg", "svm"):
        spec, _ = fit_fusion(val, y, method, groups=groups)
        spec = json.loads(json.dumps(spec))  # what model.json stores must be enough
        assert spec["method"] == method and len(spec["coef"]) == 3
        fused = fuse(test, spec)
        assert fused.shape == yt.shape and ((fused >= 0) & (fused <= 1)).all()
        ff1 = evaluate_scores(yt, fused, ["a", "b", "c"])["summary"]["f1_macro"]
        assert ff1 > max(f1.values()) + 0.05, (method, ff1, f1)
    w, _ = fit_fusion(val, y, "weighted")
    assert set(w["weights"]) == {"spatial", "flow"}
    assert sum(w["weights"].values()) == pytest.approx(1.0)
    auto, _ = fit_fusion(val, y, "auto", groups=groups)
    # learned fusion wins on complementary streams
    assert auto["method"] in ("logreg", "svm", "temporal")
    assert set(auto["val_f1_macro"]) == {"average", "weighted", "logreg", "svm", "temporal"}


def test_single_class_label_falls_back_to_average():
    y, val = _streams(seed=2)
    y[:, 1] = 0
    spec, _ = fit_fusion(val, y, "logreg")
    assert spec["coef"][1] is None
    out = fuse(val, spec)
    avg = fuse(val, {"method": "weighted", "weights": spec["weights"]})
    assert out[:, 1] == pytest.approx(avg[:, 1])
    # Only one stream available at prediction time: weighted average of what is there.
    assert fuse({"spatial": val["spatial"]}, spec) == pytest.approx(val["spatial"])


def test_smoothing_within_clips_and_window_choice():
    from facs.training.fusion import smooth

    p = np.array([[0.0], [1.0], [0.0], [1.0], [0.0], [0.0]])
    clips = np.array(["a", "a", "a", "b", "b", "b"])
    frames = np.array([0, 3, 6, 0, 3, 6])
    out = smooth(p, 7, frames, clips)  # +-3.5 frames: the neighbours, never the other clip
    assert out[:, 0] == pytest.approx([0.5, 1 / 3, 0.5, 0.5, 1 / 3, 0.0])
    assert smooth(p, 0) is not None and smooth(p, 0) == pytest.approx(p)
    # Noisy frame scores of long events: validation picks a window > 0, and it helps on test.
    rng = np.random.default_rng(0)

    def clip_scores(n_clips):
        y = np.zeros((n_clips * 60, 1), np.uint8)
        for c in range(n_clips):
            y[c * 60 + 20 : c * 60 + 40] = 1
        p = np.clip(0.5 * y + rng.normal(0.25, 0.3, y.shape), 0, 1)
        return y, p, np.tile(np.arange(60), n_clips), np.repeat(np.arange(n_clips), 60)

    y, p, f, c = clip_scores(10)
    spec, _ = fit_fusion(
        {"spatial": p}, y, "average", frames=f, clips=c, smooth_frames=(0, 5, 9, 15)
    )
    assert spec["smooth_frames"] > 0
    yt, pt, ft, ct = clip_scores(10)
    raw = evaluate_scores(yt, pt, ["a"])["summary"]["f1_macro"]
    smoothed = evaluate_scores(yt, fuse({"spatial": pt}, spec, ft, ct), ["a"])
    assert smoothed["summary"]["f1_macro"] > raw


def _blinks_and_closures(n_clips: int, seed: int):
    """Eyes shut briefly (label 'blink', 4 frames) or long (label 'closed', 30 frames): an
    'eyes shut' detector scores both the same, frame by frame; only duration tells them apart."""
    rng = np.random.default_rng(seed)
    n = 90
    y = np.zeros((n_clips * n, 2), np.uint8)
    for c in range(n_clips):
        if c % 2:
            y[c * n + 30 : c * n + 34, 0] = 1  # blink
        else:
            y[c * n + 30 : c * n + 60, 1] = 1  # closed
    shut = y.max(axis=1, keepdims=True)
    z = np.where(shut == 1, 2.0, -2.0) + rng.normal(0, 0.7, shut.shape)
    p = np.repeat(1 / (1 + np.exp(-z)), 2, axis=1)  # the same score for both labels
    frames = np.tile(np.arange(n), n_clips)
    clips = np.repeat(np.arange(n_clips), n)
    return y, {"spatial": p}, frames, clips


def test_temporal_fusion_uses_duration_and_predicts_without_clip_info():
    y, val, f, c = _blinks_and_closures(24, seed=0)
    yt, test, ft, ct = _blinks_and_closures(24, seed=1)
    groups = c // 2
    names = ["blink", "closed"]
    per_frame, _ = fit_fusion(val, y, "logreg", groups=groups, frames=f, clips=c)
    temporal, _ = fit_fusion(val, y, "temporal", groups=groups, frames=f, clips=c)
    temporal = json.loads(json.dumps(temporal))
    assert temporal["context"] == [3, 9, 18] and len(temporal["coef"][0]) == 2 * 4
    f1_frame = evaluate_scores(yt, fuse(test, per_frame, ft, ct), names)["summary"]["f1_macro"]
    f1_time = evaluate_scores(yt, fuse(test, temporal, ft, ct), names)["summary"]["f1_macro"]
    assert f1_time > 0.9 > f1_frame + 0.2, (f1_time, f1_frame)
    # One clip at prediction time (facs analyze, the web demo): rows are its frames in order.
    one = slice(0, 90)
    alone = fuse({"spatial": test["spatial"][one]}, temporal)
    assert alone == pytest.approx(fuse(test, temporal, ft, ct)[one])
    auto, oof = fit_fusion(val, y, "auto", groups=groups, frames=f, clips=c)
    assert auto["method"] == "temporal"
    # the validation predictions it returns (for thresholds) are out-of-fold, not in-sample
    assert oof.shape == y.shape and not np.allclose(oof, fuse(val, auto, f, c))
    assert evaluate_scores(y, oof, names)["summary"]["f1_macro"] > 0.9
    # A stream set other than the fitted one is an error that says so, not a shape crash.
    with pytest.raises(FacsError, match="fitted on 8 features"):
        fuse(
            {"spatial": test["spatial"], "flow": test["spatial"]},
            {**temporal, "streams": ["spatial", "flow"]},
        )
