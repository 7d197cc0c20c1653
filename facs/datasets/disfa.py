"""Reader for DISFA (Denver Intensity of Spontaneous Facial Action), same label model as MMI.

    DATA/ActionUnit_Labels/SN001/SN001_au12.txt      lines "frame,intensity" (0..5)
    DATA/Videos_LeftCamera/LeftVideoSN001_comp.avi   the clip (RightCamera: RightVideoSN001...)

One clip per subject and camera. A frame is positive where the intensity is >= 2 (the usual
DISFA protocol, `threshold`); positive runs become (onset, apex, offset) events with the apex at
the run's most intense frame, so span mode reproduces the per-frame coding exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facs.aus import normalize_code
from facs.datasets.clips import Clip, Skipped, intensity_runs, probe_video, rel
from facs.datasets.reading import read_or_skip
from facs.datasets.runs import runs_to_events
from facs.errors import FacsError

LABELS_DIR = "ActionUnit_Labels"
CAMERAS = {
    "left": ("Videos_LeftCamera", "LeftVideo"),
    "right": ("Videos_RightCamera", "RightVideo"),
}
_AU_FILE = re.compile(r"^(?P<subject>.+)_au(?P<code>\d+[A-Za-z]?)\.txt$", re.IGNORECASE)


def is_disfa(root: Path) -> bool:
    return (Path(root) / LABELS_DIR).is_dir()


def read_au_file(path: str | Path, frames: int | None = None) -> np.ndarray:
    """One `SNxxx_auN.txt` -> intensity per frame (int array of length `frames`, or of the
    highest frame listed). Frames not listed are 0.

    DISFA numbers its frames from 1 (lines 1..4845 for a 4845-frame video); a file whose first
    numbered line is frame 0 is read as 0-based (some converted copies are), and either way
    frame i of the file is the video's i-th decoded frame."""
    path = Path(path)
    rows: list[tuple[int, int, int]] = []  # (line, frame, value)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = re.split(r"[,\s]+", line)
        try:
            frame, value = int(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise FacsError(
                f"{path}: line {lineno}: expected 'frame,intensity', got {line!r}"
            ) from None
        if not (value == int(value) and 0 <= value <= 5):
            raise FacsError(f"{path}: line {lineno}: intensity {parts[1]} (expected 0..5)")
        rows.append((lineno, frame, int(value)))
    base = 0 if rows and rows[0][1] == 0 else 1
    for lineno, frame, _ in rows:
        if frame < base:
            raise FacsError(f"{path}: line {lineno}: frame {frame} (frames count from {base})")
        if frames is not None and frame - base >= frames:
            raise FacsError(
                f"{path}: line {lineno}: frame {frame} is beyond the clip's last frame "
                f"({frames - 1 + base}, numbered from {base})"
            )
    n = frames if frames is not None else max((f - base + 1 for _, f, _ in rows), default=0)
    out = np.zeros(n, dtype=np.int16)
    for _, f, v in rows:
        out[f - base] = v
    return out


def _video_for(root: Path, subject: str, camera: str) -> Path | None:
    folder, prefix = CAMERAS[camera]
    for cand in sorted((root / folder).glob(f"{prefix}{subject}*")):
        if cand.is_file():
            return cand
    return None


def scan(
    root: str | Path,
    camera: str = "left",
    threshold: int = 2,
    progress: bool = True,
    skip_bad: bool = False,
    skipped: list[Skipped] | None = None,
) -> list[Clip]:
    from tqdm import tqdm

    root = Path(root)
    if camera not in CAMERAS:
        raise FacsError(f"DISFA camera {camera!r}: expected left or right")
    skipped = skipped if skipped is not None else []
    subjects = sorted(p for p in (root / LABELS_DIR).iterdir() if p.is_dir())
    clips: list[Clip] = []
    for folder in tqdm(subjects, desc="index", unit="subject", disable=None if progress else True):
        clip = read_or_skip(
            rel(folder, root), skip_bad, skipped, _read_subject, root, folder, camera, threshold
        )
        if clip is not None:
            clips.append(clip)
    return clips


def _read_subject(root: Path, folder: Path, camera: str, threshold: int) -> Clip:
    subject = folder.name
    files = {}
    for f in sorted(folder.iterdir()):
        m = _AU_FILE.match(f.name)
        if m:
            files[normalize_code(m.group("code"))] = f
    if not files:
        raise FacsError(f"{folder}: no {subject}_au<N>.txt label files")
    video = _video_for(root, subject, camera)
    if video is None:
        folder_name, prefix = CAMERAS[camera]
        raise FacsError(
            f"{folder}: no video for these labels (looked for {root / folder_name}/"
            f"{prefix}{subject}*)"
        )
    info = probe_video(video)
    events, kept = {}, {}
    for code, path in files.items():
        intensity = read_au_file(path, frames=info.frames)
        events[code] = runs_to_events(intensity >= threshold, intensity)
        kept[code] = intensity_runs(intensity)
    return Clip(
        id=f"{subject}-{camera}",
        session=subject,
        subject=subject,
        video=rel(video, root),
        xml=rel(folder, root),
        fps=float(info.fps),
        frames=int(info.frames),
        width=int(info.width),
        height=int(info.height),
        events=events,
        intensity=kept,
    )
