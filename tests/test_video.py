"""facs.video: probe and decode real files, including a header-less live webm and bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from facs.errors import FacsError
from facs.video import frame_times, probe, read_all, read_frames


def _write_avi(path: Path, n: int = 30, size: tuple[int, int] = (192, 144)) -> None:
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    assert vw.isOpened()
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, :, 1] = 8 * i  # frame index readable from the green level
        vw.write(frame)
    vw.release()


def _write_live_webm(path: Path, n: int = 24, fps: int = 30) -> None:
    """VP8 webm written as a live stream: no duration in the header, like MediaRecorder's."""
    import av

    with av.open(str(path), "w", format="webm", options={"live": "1"}) as c:
        s = c.add_stream("libvpx", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = Fraction(1, 1000)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 9 * i, np.uint8), format="bgr24")
            f.pts, f.time_base = round(i * 1000 / fps), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_avi_probe_and_frames(tmp_path):
    path = tmp_path / "clip.avi"
    _write_avi(path, n=30)
    info = probe(path)
    assert (info.frames, info.width, info.height) == (30, 192, 144)
    assert info.fps == pytest.approx(25.0)
    assert probe(path, exact=True).frames == 30
    frames = read_all(path)
    assert frames.shape == (30, 144, 192, 3) and frames.dtype == np.uint8
    greens = frames[:, 72, 96, 1].astype(int)
    assert np.all(np.abs(greens - 8 * np.arange(30)) <= 4)
    strided = list(read_frames(path, stride=4))
    assert len(strided) == 8  # frames 0, 4, ..., 28
    assert abs(int(strided[2][72, 96, 1]) - 64) <= 4


def test_live_webm_header_lies_counts_by_decoding(tmp_path):
    path = tmp_path / "rec.webm"
    _write_live_webm(path, n=24, fps=30)
    header = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)
    assert not 0 < header < 1e7  # the header really is unusable
    info = probe(path)
    assert (info.frames, info.width, info.height) == (24, 64, 48)
    assert info.fps == pytest.approx(30.0, rel=0.01)
    assert len(list(read_frames(path))) == 24
    t = frame_times(path)
    assert len(t) == 24 and t[0] == 0.0
    assert t[-1] == pytest.approx(23 / 30, abs=0.002)


def test_real_mp4(examples_dir):
    path = examples_dir / "single_face.mp4"
    info = probe(path)
    assert (info.frames, info.width, info.height) == (72, 640, 360)
    assert info.fps == pytest.approx(30.0)
    assert sum(1 for _ in read_frames(path, stride=2)) == 36


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated"])
def test_bad_input_names_the_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "truncated":
        good = tmp_path / "good.avi"
        _write_avi(good, n=10)
        path.write_bytes(good.read_bytes()[:300])  # header only, no frame data
    with pytest.raises(FacsError, match=path.name):
        probe(path)
    with pytest.raises(FacsError, match=path.name):
        list(read_frames(path))


def test_truncated_tail_keeps_decodable_frames(tmp_path):
    good = tmp_path / "good.avi"
    _write_avi(good, n=30)
    data = good.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    n = len(list(read_frames(cut)))
    assert 5 <= n < 30
