"""Face stage on the synthetic corpus: crops hold the drawn face, masks are elliptic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facs.preprocess.records import (
    FaceParams,
    crop_face,
    detect_clip_box,
    elliptic_mask,
    merge_detections,
)
from facs.video import read_frames


def _clips(work: Path) -> list[dict]:
    return json.loads((work / "index.json").read_text())["clips"]


def _truth(work: Path, clip: dict) -> dict:
    root = Path(json.loads((work / "index.json").read_text())["root"])
    video = root / clip["video"]
    return json.loads(video.with_name(video.stem + "-truth.json").read_text())


def test_crops_contain_the_drawn_face(small_work):
    clips = _clips(small_work)
    assert len(clips) == 16
    for clip in clips:
        meta = json.loads((small_work / "faces" / f"{clip['id']}.json").read_text())
        assert meta["face"], clip["id"]
        truth = _truth(small_work, clip)
        crops = np.load(small_work / "faces" / f"{clip['id']}.npy")
        assert crops.shape == (truth["frames"], 72, 72, 3) and crops.dtype == np.uint8
        bx, by, bw, bh = meta["box"]
        assert bw == bh  # square, so the resize keeps the face's proportions
        fb = np.asarray(truth["face_box"], float)
        cx, cy = fb[:, 0] + fb[:, 2] / 2, fb[:, 1] + fb[:, 3] / 2
        # the drawn face's centre is inside the crop's central half in every frame
        assert np.all(np.abs(cx - (bx + bw / 2)) < bw / 4), clip["id"]
        assert np.all(np.abs(cy - (by + bh / 2)) < bh / 4), clip["id"]
        # and most of the drawn face's box is inside the crop box
        ix = np.clip(np.minimum(fb[:, 0] + fb[:, 2], bx + bw) - np.maximum(fb[:, 0], bx), 0, None)
        iy = np.clip(np.minimum(fb[:, 1] + fb[:, 3], by + bh) - np.maximum(fb[:, 1], by), 0, None)
        assert np.all(ix * iy / (fb[:, 2] * fb[:, 3]) > 0.7), clip["id"]
        # per sampled frame detection flags are kept
        assert meta["sampled"] == list(range(0, truth["frames"], 10))
        assert sum(meta["found"]) >= len(meta["found"]) // 2


def test_masks_are_elliptic(small_work):
    mask = elliptic_mask(72, (0.4, 0.5)).astype(bool)
    # semi-axes 0.4*72 = 28.8 px across, 0.5*72 = 36 px down: the centre row and column span
    assert mask[36].sum() == pytest.approx(2 * 28.8, abs=2)
    assert mask[:, 36].sum() == pytest.approx(72, abs=1)
    assert not mask[0, 0] and not mask[36, 2] and mask[36, 36]
    for clip in _clips(small_work)[:4]:
        crops = np.load(small_work / "faces" / f"{clip['id']}.npy")
        assert np.all(crops[:, ~mask] == 0)  # everything outside the ellipse is black
        inside = crops[:, mask].max(axis=-1)
        assert (inside > 0).mean() > 0.95  # the face fills the ellipse


def test_crop_face_pads_outside_the_frame():
    frame = np.full((50, 60, 3), 200, np.uint8)
    out = crop_face(frame, (-25, -25, 50, 50), 20, mask=False)
    assert out.shape == (20, 20, 3)
    assert out[:8, :8].max() == 0 and out[-4:, -4:].min() == 200  # black where outside


def test_merge_rule_most_frequent_track_enclosing_box():
    face = [(40, 30, 50, 50), (42, 31, 50, 50), None, (44, 33, 52, 52), (41, 29, 50, 50)]
    per_frame = [[b] if b else [] for b in face]
    per_frame[1].append((150, 10, 30, 30))  # a false positive in one frame only
    box, chosen = merge_detections(per_frame)
    # the union of the face track: x 40..96, y 29..85 -> 56 x 56, already square
    assert box == (40, 29, 56, 56)
    assert [c is not None for c in chosen] == [True, True, False, True, True]
    box_m, _ = merge_detections(per_frame, margin=0.1)
    assert box_m[2] == round(56 * 1.2) and box_m[0] + box_m[2] / 2 == pytest.approx(68, abs=1)
    assert merge_detections([[], []]) is None


def test_detect_clip_box_api_on_an_array(small_corpus):
    video = next(small_corpus.glob("Sessions/*/*.avi"))
    frames = np.stack(list(read_frames(video)))
    track = detect_clip_box(frames, FaceParams(every=10))
    assert track is not None
    assert track.sampled == list(range(0, len(frames), 10))
    crops = [crop_face(f, track.box, 64) for f in frames[:3]]
    assert crops[0].shape == (64, 64, 3)
    assert FaceParams().every == 10 and FaceParams().scale_factor == 1.1


def test_faces_stage_without_index_is_a_clean_error(tmp_path, capsys):
    from facs.cli import main

    assert main(["faces", "--profile", "quick", "--work", str(tmp_path / "none")]) == 2
    assert "index.json" in capsys.readouterr().err
