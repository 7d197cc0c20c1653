"""Geometry (landmark) stream: invariances of the features, calibration, and real video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facs.analysis import geometry as G
from facs.analysis.landmarks import MIRROR

# One person's neutral feature vector (geometry.FEATURES order), for synthetic feature tracks.
NEUTRAL = np.array(
    [0.7, 0.55, 0.4, 0.15, -0.07, 0.22, -1.27, 0.43, 0.73, -1.95, -0.17, 0.01, 0.40, 3.2, 1.0],
    np.float32,
)


def _face_points(seed: int = 0) -> np.ndarray:
    """A plausible 68-point face (pixels) from a real frame's landmarks, jittered."""
    from facs.analysis.landmarks import LandmarkTracker
    from facs.datasets.realfaces import example_video
    from facs.video import read_frames

    frame = next(iter(read_frames(example_video("single_face.mp4"))))
    pts = LandmarkTracker()(frame).points.astype(np.float64)
    return pts + np.random.default_rng(seed).normal(0, 0.5, pts.shape)


@pytest.fixture(scope="module")
def points(examples_dir) -> np.ndarray:
    return _face_points()


def test_features_ignore_roll_scale_and_translation(points):
    a = np.deg2rad(25.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = (points - points.mean(0)) @ rot.T * 1.7 + np.array([40.0, -13.0])
    np.testing.assert_allclose(G.features(moved), G.features(points), atol=1e-4)


def test_features_ignore_mirroring(points):
    flipped = points.copy()
    flipped[:, 0] = 640 - flipped[:, 0]
    relabelled = flipped[MIRROR]  # a mirrored face's point i is the original's MIRROR[i]
    np.testing.assert_allclose(G.features(relabelled), G.features(points), atol=1e-4)


def _turned(points: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """The face seen after turning the head (degrees), orthographic: a rigid 3D face whose
    depths are facs.geometry's per-landmark depths."""
    q = G.normalise(points) * 100.0  # upright face, 100 px between the eyes
    x, y = q[:, 0], q[:, 1]
    z = G.DEPTH * G.NOSE_DEPTH * 100.0
    a, b = np.deg2rad(yaw), np.deg2rad(pitch)
    x, z = x * np.cos(a) + z * np.sin(a), -x * np.sin(a) + z * np.cos(a)
    y = y * np.cos(b) + z * np.sin(b)
    return np.stack([x + 320, y + 200], axis=1)


@pytest.mark.parametrize("yaw,pitch", [(25.0, 0.0), (-25.0, 0.0), (0.0, 15.0), (15.0, -12.0)])
def test_features_ignore_head_turns(points, yaw, pitch):
    # a video of one face: two thirds frontal (the median pose), then turned
    clip = np.stack([_turned(points, 0, 0)] * 6 + [_turned(points, yaw, pitch)] * 3)
    f = G.features(clip)
    frontal, turned = f[0], f[-1]
    naive = G.features(clip, pose=False)[-1]
    err, naive_err = np.abs(turned - frontal), np.abs(naive - frontal)
    assert err.max() < 0.03, dict(zip(G.FEATURES, err.round(3), strict=True))
    assert naive_err.max() > 2 * err.max()  # the correction is what makes it hold


def test_neutral_calibration_when_the_expression_dominates():
    # 15 neutral frames, then 45 frames of raised lip corners: the median would be the smile.
    rng = np.random.default_rng(1)
    f = np.tile(
        NEUTRAL,
        (60, 1),
    )
    f += rng.normal(0, 0.005, f.shape).astype(np.float32)
    f[15:, G.FI["corner_height"]] += 0.3
    f[15:, G.FI["mouth_width"]] += 0.3
    f[15:, G.FI["lip_gap"]] += 0.3
    f[[5, 40]] = np.nan  # frames without a face
    p = G.rule_probs(f)
    au12, au25, au15 = (G.LABELS.index(c) for c in ("12", "25", "15"))
    assert p[:15, au12][np.isfinite(f[:15, 0])].max() < 0.1
    assert p[16:, au12][np.isfinite(f[16:, 0])].min() > 0.9
    assert p[16:, au25][np.isfinite(f[16:, 0])].min() > 0.9
    assert p[:, au15].max() < 0.1  # the neutral frames are not read as corners pulled down
    assert p[5].max() == 0.0 and p[40].max() == 0.0


def test_blink_is_au45_and_long_closure_au43():
    f = np.tile(
        NEUTRAL,
        (100, 1),
    )
    f[20:23, G.FI["eye_open"]] = 0.03  # 3 frames at 25 fps: a blink
    f[60:90, G.FI["eye_open"]] = 0.02  # 1.2 s: eyes closed
    p = G.rule_probs(f, fps=25.0)
    au43, au45 = G.LABELS.index("43"), G.LABELS.index("45")
    assert p[21, au45] > 0.9 and p[21, au43] < 0.1
    assert p[75, au43] > 0.9 and p[75, au45] < 0.1
    assert p[40, au43] < 0.1 and p[40, au45] < 0.1


def test_learned_classifier_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(G.INPUT_NAMES))).astype(np.float32)
    y = np.stack([x[:, 9] > 0.5, x[:, 11] > 0, np.zeros(400, bool)], axis=1).astype(np.uint8)
    clf = G.LearnedGeometry.fit(x, y, ["12", "25", "9"])
    p = clf.predict(x)
    assert ((p[:, 0] > 0.5) == y[:, 0]).mean() > 0.9
    assert ((p[:, 1] > 0.5) == y[:, 1]).mean() > 0.9
    assert p[:, 2].max() < 0.05
    clf.save(tmp_path / "g.json")
    again = G.LearnedGeometry.load(tmp_path / "g.json")
    np.testing.assert_allclose(again.predict(x), p, atol=1e-6)


def _transformed(src, dst, how: str) -> None:
    """The clip mirrored, or rolled by 12 degrees and shrunk to 80 % (a tilted head)."""
    from facs.video import probe, read_frames

    info = probe(src)
    size = (info.width, info.height)
    w = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), info.fps, size)
    m = cv2.getRotationMatrix2D((info.width / 2, info.height / 2), 12.0, 0.8)
    for frame in read_frames(src):
        if how == "mirrored":
            w.write(cv2.flip(frame, 1))
        else:
            w.write(cv2.warpAffine(frame, m, size, borderMode=cv2.BORDER_REPLICATE))
    w.release()


@pytest.mark.parametrize("how", ["original", "mirrored", "rolled"])
def test_single_face_smile(examples_dir, tmp_path, how):
    """single_face.mp4: neutral for frames 0-17, a broad smile with teeth for about 20-68."""
    from facs.analysis.model import load_model
    from facs.analysis.predict import predict_video

    video = examples_dir / "single_face.mp4"
    if how != "original":
        _transformed(video, tmp_path / f"{how}.avi", how)
        video = tmp_path / f"{how}.avi"
    r = predict_video(video, load_model("geometry"))
    probs = np.array([f["probs"] for f in r["per_frame"]])
    assert r["frames"] == 72 and r["faces"] == 72
    for code in ("12", "25"):
        j = r["labels"].index(code)
        assert probs[0:12, j].mean() <= 0.3, code
        assert probs[25:61, j].mean() >= 0.7, code
    assert {t["code"] for t in r["top5"][:2]} == {"12", "25"}
    # No brow or eye-closure AU in a smile: the rest of the rules stay quiet on the apex.
    for code in ("1", "2", "4", "15", "17", "26", "27", "43"):
        j = r["labels"].index(code)
        assert probs[25:61, j].mean() < 0.3, code
