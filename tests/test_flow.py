"""Flow: Farneback sign and magnitude on known motion, encoding, stack order at clip ends."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facs.preprocess.records import (
    clip_flows,
    decode_flow,
    encode_flow,
    farneback,
    flow_stack,
    stack_indices,
)


def _texture(size: int = 240, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = (rng.random((size, size)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _moving(n: int, dx: float, dy: float, size: int = 72) -> np.ndarray:
    """n BGR crops of a texture whose content moves by (dx, dy) pixels per frame."""
    tex = _texture()
    out = []
    for i in range(n):
        m = np.float32([[1, 0, dx * i], [0, 1, dy * i]])  # content shifts right/down
        shifted = cv2.warpAffine(tex, m, tex.shape[::-1], flags=cv2.INTER_LINEAR)
        c = shifted[80 : 80 + size, 80 : 80 + size]
        out.append(cv2.cvtColor(c, cv2.COLOR_GRAY2BGR))
    return np.stack(out)


def test_known_motion_sign_and_magnitude():
    crops = _moving(6, dx=1.5, dy=-1.0)
    f = farneback(crops[0], crops[1])
    centre = f[20:52, 20:52].reshape(-1, 2).mean(axis=0)
    assert centre[0] == pytest.approx(1.5, abs=0.15)  # right = +x
    assert centre[1] == pytest.approx(-1.0, abs=0.15)  # up = -y
    enc = clip_flows(crops, stride=1)
    assert enc.shape == (5, 72, 72, 2) and enc.dtype == np.uint8
    # 128 + 12.8 * 1.5 = 147.2, 128 - 12.8 = 115.2
    assert np.median(enc[:, 20:52, 20:52, 0]) == pytest.approx(147, abs=2)
    assert np.median(enc[:, 20:52, 20:52, 1]) == pytest.approx(115, abs=2)
    enc3 = clip_flows(crops, stride=3)  # frames 3 apart: three times the motion
    assert enc3.shape == (3, 72, 72, 2)
    d3 = decode_flow(enc3[:, 20:52, 20:52]).reshape(-1, 2).mean(axis=0)
    assert d3[0] == pytest.approx(4.5, abs=0.4) and d3[1] == pytest.approx(-3.0, abs=0.4)


def test_encoding_rounds_and_clips():
    flow = np.array([[[0.0, 1.0], [-1.0, 30.0], [-30.0, 0.04]]], np.float32)
    enc = encode_flow(flow)
    assert enc.tolist() == [[[128, 141], [115, 255], [0, 129]]]
    assert decode_flow(enc)[0, 0, 1] == pytest.approx(13 / 12.8)


def _labelled_flows(m: int, size: int = 4) -> np.ndarray:
    """Flow j has x = j and y = 100 + j everywhere: channel values name the flow index."""
    f = np.zeros((m, size, size, 2), np.uint8)
    for j in range(m):
        f[j, ..., 0], f[j, ..., 1] = j, 100 + j
    return f


def test_stack_order_and_clip_ends():
    flows = _labelled_flows(20)  # a clip of 21 frames, stride 1
    mid = flow_stack(flows, 10, layout="x")
    assert mid.shape == (10, 4, 4)
    assert mid[:, 0, 0].tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]  # 5 before, 5 after
    first = flow_stack(flows, 0, layout="x")[:, 0, 0].tolist()
    assert first == [0, 0, 0, 0, 0, 0, 1, 2, 3, 4]  # clamped: flow 0 repeated
    last = flow_stack(flows, 20, layout="y")[:, 0, 0].tolist()
    assert last == [115, 116, 117, 118, 119, 119, 119, 119, 119, 119]
    xy = flow_stack(flows, 1, layout="xy")[:, 0, 0].tolist()
    assert len(xy) == 20
    assert xy[:6] == [0, 100, 0, 100, 0, 100]  # x, y interleaved (Simonyan & Zisserman)
    assert xy[-4:] == [4, 104, 5, 105]
    # stride 3: flows chained without overlap, frames t-15 .. t+15
    assert stack_indices(30, 40, stride=3) == [15, 18, 21, 24, 27, 30, 33, 36, 39, 39]
    assert stack_indices(2, 40, stride=3) == [0, 0, 0, 0, 0, 2, 5, 8, 11, 14]
    empty = flow_stack(np.zeros((0, 4, 4, 2), np.uint8), 0, layout="xy")
    assert empty.shape == (20, 4, 4) and np.all(empty == 128)


def test_flow_stage_files(small_work):
    clips = json.loads((small_work / "index.json").read_text())["clips"]
    for clip in clips[:3]:
        n = len(np.load(small_work / "faces" / f"{clip['id']}.npy", mmap_mode="r"))
        for s in (1, 3):
            f = np.load(small_work / "flow" / f"s{s}" / f"{clip['id']}.npy")
            assert f.shape == (n - s, 72, 72, 2) and f.dtype == np.uint8
            meta = json.loads((small_work / "flow" / f"s{s}" / f"{clip['id']}.json").read_text())
            assert meta["stride"] == s and meta["flows"] == n - s
        # outside the face mask nothing moves: exactly 128
        f1 = np.load(small_work / "flow" / "s1" / f"{clip['id']}.npy")
        assert np.abs(f1[:, 0:3, 0:3].astype(int) - 128).max() <= 1


def test_flow_rerun_redoes_nothing(small_work, capsys):
    from facs.cli import main

    assert main(["flow", "--profile", "quick", "--work", str(small_work)]) == 0
    assert "16 already done, 0 to do" in capsys.readouterr().out
