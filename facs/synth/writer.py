"""Writing one clip in MMI's layout: the .avi, the OAO FACS XML (markers only), session.xml and
the per-frame truth. Every file goes to a temporary name first and is renamed when complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from facs.aus import sort_codes
from facs.errors import FacsError
from facs.synth.timeline import ClipPlan


def clip_name(subject: int, session: int) -> str:
    return f"S{subject:03d}-{session:03d}"


class AviWriter:
    """MJPG .avi through the FFmpeg bundled with OpenCV: byte-identical output for the same
    frames, ~4 KB a frame (OpenCV's own MJPEG muxer writes 2.5x larger files, slower)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        fourcc = cv2.VideoWriter_fourcc(*"MJPG")
        self.vw = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, fourcc, fps, size)
        if not self.vw.isOpened():  # an OpenCV build without FFmpeg: use its own muxer
            self.vw = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, size)
        if not self.vw.isOpened():
            raise FacsError(f"{path}: OpenCV cannot open an MJPG video writer here")

    def write(self, frame: np.ndarray) -> None:
        self.vw.write(frame)

    def close(self) -> None:
        self.vw.release()


def oao_xml(plan: ClipPlan) -> str:
    """MMI's OAO FACS file: per AU, (onset, apex, offset) markers of each event, 1-based."""
    marks: dict[str, list[tuple[int, int, int]]] = {}
    for ev in plan.events:
        for au, (onset, apex, offset, _) in ev.courses.items():
            marks.setdefault(au, []).append((onset, apex, offset))
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<ActionUnits>"]
    for au in sort_codes(marks):
        lines.append(f'  <ActionUnit Number="{au}">')
        for triple in sorted(marks[au]):
            for typ, frame in zip((1, 2, 3), triple, strict=True):
                lines.append(f'    <Marker Frame="{frame + 1}" Type="{typ}" />')
        lines.append("  </ActionUnit>")
    lines.append("</ActionUnits>")
    return "\n".join(lines) + "\n"


def session_xml(session: int, subject: int, media: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<session sessionId="{session}" mediaFile="{media}">\n'
        f'  <subject id="{subject}" />\n'
        '  <track type="Video" id="0" />\n'
        "</session>\n"
    )


def truth_json(plan: ClipPlan, subject: int, fps: float, size, boxes) -> str:
    aus = {
        au: [round(float(v), 3) for v in plan.intensity[au]] for au in sort_codes(plan.intensity)
    }
    doc = {
        "fps": fps,
        "frames": plan.frames,
        "width": size[0],
        "height": size[1],
        "subject": str(subject),
        "aus": aus,
        "face_box": boxes,
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
