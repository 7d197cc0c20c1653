"""The real-face model (MediaPipe's landmarks and blendshapes, facs.analysis.realface) on real
faces: the default of `facs analyze`, smiles against crying, clips that start smiling, edited
clips, stills and image folders, and their errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from facs.analysis.model import load_model
from facs.analysis.predict import predict_video
from facs.cli import main
from facs.video import probe, read_frames


def _clip(src: Path, out: Path, first: int, last: int, edit=None) -> Path:
    """Frames first..last of a clip as MJPG .avi, optionally edited."""
    info = probe(src)
    frames = [f for i, f in enumerate(read_frames(src)) if first <= i <= last]
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), info.fps, (w, h))
    for f in frames:
        vw.write(edit(f) if edit else f)
    vw.release()
    return out


def _rotate_dark(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0)
    rotated = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return (rotated * 0.5).astype(np.uint8)


def _au(result: dict, code: str) -> np.ndarray:
    j = result["labels"].index(code)
    return np.array([f["probs"][j] for f in result["per_frame"]])


@pytest.fixture(scope="module")
def face_model():
    return load_model("face")


def _analyze(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["analyze", *args, "--quiet"])
    return code, out.getvalue(), err.getvalue()


def test_default_model_is_the_real_face_model(examples_dir, tmp_path):
    """No --model: the real-face model, even when a trained model sits under models/."""
    (tmp_path / "models" / "quick-best").mkdir(parents=True)
    (tmp_path / "models" / "quick-best" / "model.json").write_text("{}")
    with contextlib.chdir(tmp_path):
        code, out, _ = _analyze(str(examples_dir / "single_face.mp4"), "-o", "r.csv")
    assert code == 0
    assert "model face (face), trained on real faces" in out
    assert "calibration of the face stream: neutral frames" in out
    df = pd.read_csv(tmp_path / "r.csv")
    assert len(df) == 72 and df["success"].all()
    # neutral for frames 0-17, a broad smile with teeth from about 20 to 68
    assert df.loc[0:15, "AU12_p"].max() <= 0.3
    assert df.loc[25:60, "AU12_p"].mean() >= 0.7
    assert df.loc[25:60, "AU25_p"].mean() >= 0.7 and df.loc[0:15, "AU25_p"].max() <= 0.3


def test_crying_is_not_a_smile(examples_dir, tmp_path, face_model):
    """Crying with stretched, pressed lips (mouthSmile ~0.9 there) is not AU12; the same
    person's laughter later is."""
    src = examples_dir / "WolfgangLanger_Pexels.mp4"
    cry = predict_video(_clip(src, tmp_path / "cry.avi", 0, 56), face_model)
    assert _au(cry, "12").max() < 0.5
    assert _au(cry, "43")[20:50].mean() >= 0.7  # eyes shut
    laugh = predict_video(_clip(src, tmp_path / "laugh.avi", 260, 400), face_model)
    assert _au(laugh, "12").mean() >= 0.7 and _au(laugh, "25").mean() >= 0.7


def test_a_clip_that_starts_smiling(examples_dir, tmp_path, face_model):
    """No neutral frame at all: the population prior, and the smile is still AU12."""
    clip = _clip(examples_dir / "single_face.mp4", tmp_path / "s.avi", 25, 68)
    r = predict_video(clip, face_model)
    assert r["calibration"]["face"]["method"] == "population prior"
    assert _au(r, "12").mean() >= 0.7 and _au(r, "12").min() >= 0.5


@pytest.mark.parametrize("edit", ["mirrored", "rotated_dark"])
def test_edited_clips(examples_dir, tmp_path, face_model, edit):
    fn = (lambda f: cv2.flip(f, 1)) if edit == "mirrored" else _rotate_dark
    clip = _clip(examples_dir / "single_face.mp4", tmp_path / f"{edit}.avi", 0, 71, fn)
    r = predict_video(clip, face_model)
    assert r["faces"] == 72
    p12 = _au(r, "12")
    assert p12[:16].max() <= 0.3 and p12[25:61].mean() >= 0.7


def test_frames_without_a_face(examples_dir, face_model):
    r = predict_video(examples_dir / "face_noface.mov", face_model)
    face = np.array([f["face"] for f in r["per_frame"]])
    assert face[:70].all() and not face[80:].any()
    assert all(max(f["probs"]) == 0 for f in r["per_frame"][80:])


def test_a_still_smile(examples_dir, tmp_path):
    code, out, _ = _analyze(str(examples_dir / "single_face.jpg"), "-o", str(tmp_path / "p.json"),
                            "--format", "json")  # fmt: skip
    assert code == 0 and "a still image, a face" in out
    r = json.loads((tmp_path / "p.json").read_text())
    assert r["input"] == "image" and r["frames"] == 1
    assert r["calibration"]["face"]["method"] == "population prior"
    assert _au(r, "12")[0] >= 0.6


def test_an_image_folder_is_one_sequence(examples_dir, tmp_path, face_model):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(read_frames(examples_dir / "single_face.mp4")):
        cv2.imwrite(str(folder / f"img_{i:04d}.png"), frame)
    code, out, _ = _analyze(str(folder), "-o", str(tmp_path / "out"))
    assert code == 0 and "72 frames at 30.00 fps" in out
    df = pd.read_csv(tmp_path / "out" / "frames.csv")
    assert len(df) == 72 and df.loc[25:60, "AU12_p"].mean() >= 0.7
    assert df.loc[0:15, "AU12_p"].max() <= 0.3


@pytest.mark.parametrize(
    "case, expect",
    [
        ("corrupt.jpg", "not a readable image"),
        ("empty_dir", "holds no video"),
        ("texts_dir", "holds no video"),
    ],
)
def test_bad_stills_and_folders(tmp_path, case, expect):
    target = tmp_path / case
    if case.endswith(".jpg"):
        target.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    else:
        target.mkdir()
        if case == "texts_dir":
            (target / "notes.txt").write_text("hello")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / f"{Path(case).stem}.csv").write_text("previous\n")
    code, _, err = _analyze(str(target), "-o", str(tmp_path / "out"))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in lines[0] and str(target) in lines[0], err
    assert "Traceback" not in err
    assert (tmp_path / "out" / f"{Path(case).stem}.csv").read_text() == "previous\n"


def test_a_trained_model_can_add_the_real_face_stream(examples_dir, tmp_path):
    """`--streams spatial,flow,face`: a CNN model fused with the built-in real-face stream."""
    from facs.training.standin import stand_in_model

    folder = stand_in_model(tmp_path / "m", ["1", "12", "25"], landmarks=False)
    clip = _clip(examples_dir / "single_face.mp4", tmp_path / "c.avi", 0, 29)
    r = predict_video(clip, load_model(folder), ["spatial", "flow", "face"])
    assert r["streams"] == ["spatial", "flow", "face"] and r["faces"] == 30
    assert np.isfinite(_au(r, "12")).all()
