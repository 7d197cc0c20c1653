"""Builders for tiny hand-written MMI trees: real MJPG AVIs and OAO XML written by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "mmi"


def write_avi(path: Path, frames: int, size: tuple[int, int] = (48, 36), fps: float = 25.0):
    """A real MJPG AVI of `frames` frames (a moving bar, so frames differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        img = np.full((h, w, 3), 60, np.uint8)
        img[:, (i * 3) % w] = 250
        vw.write(img)
    vw.release()
    return path


def oao_xml(units: dict[str, list[tuple[int, int]]]) -> str:
    """{code: [(frame 1-based, type), ...]} -> MMI OAO XML text (markers in the given order)."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<ActionUnits>"]
    for code, markers in units.items():
        lines.append(f'  <ActionUnit Number="{code}">')
        lines += [f'    <Marker Frame="{f}" Type="{t}" />' for f, t in markers]
        lines.append("  </ActionUnit>")
    lines.append("</ActionUnits>")
    return "\n".join(lines) + "\n"


def session_xml(session: str, subject: str | None, media: str) -> str:
    subj = f'  <subject id="{subject}" />\n' if subject is not None else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<session sessionId="{session}" mediaFile="{media}">\n{subj}'
        '  <track type="Video" id="0" />\n</session>\n'
    )


def add_clip(
    root: Path,
    session: str,
    subject: str | None,
    name: str,
    frames: int,
    units: dict | str | None,
    video: bool = True,
) -> Path:
    """One session folder with one clip; `units` is a dict for oao_xml, raw XML text, or None
    (no OAO file: a clip without per-frame annotation)."""
    folder = root / "Sessions" / session
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "session.xml").write_text(session_xml(session, subject, f"{name}.avi"))
    if video:
        write_avi(folder / f"{name}.avi", frames)
    if units is not None:
        text = units if isinstance(units, str) else oao_xml(units)
        (folder / f"{name}-oao_aucs.xml").write_text(text)
    return folder


def facs_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real `facs` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "facs.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
