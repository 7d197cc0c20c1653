"""The drawn corpus in the on-disk format of DISFA, BP4D or CK+ (`facs synth --layout`), so
that every reader and every stage after it runs here on files shaped like the real ones.

    disfa   ActionUnit_Labels/SN001/SN001_au12.txt     "frame,intensity", 1-based, 0..5
            Videos_LeftCamera/LeftVideoSN001_comp.avi  one video per subject (its clips in a row)
            Videos_RightCamera/RightVideoSN001_comp.avi the second camera (the mirror image)
    bp4d    AUCoding/AU_OCC/F001_T1.csv                header "0,1,2,4,...": frame, then 0/1/9
            Sequences/F001/T1/1.jpg, 2.jpg, ...        one image per frame, unpadded numbers
    ckplus  cohn-kanade-images/S001/001/S001_001_00000001.png ...  neutral to peak, grey
            FACS/S001/001/S001_001_000000NN_facs.txt  "AU intensity" lines for the peak (NN)

What each layout keeps of the drawn truth (an AU's intensity in [0, 1] per frame), as the real
corpora do: DISFA intensities 0-5 (ceil(5 v)); BP4D occurrence (v > 0) on the coded frames,
the first and last two frames left out of the CSV, one run of 9 (not coded) per clip and the
columns of BP4D's AUs the drawing never shows (10, 14, 23, 24) all 9; CK+ one sequence per clip
from just before the first expression's onset to its apex, labelled at the apex only (AUs
with v > 0, intensity ceil(5 v)); a clip without an expression gets images and no coding, as
CK+'s uncoded sessions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from facs.aus import sort_codes
from facs.synth.timeline import AUS, ClipPlan
from facs.synth.writer import AviWriter, write_text

LAYOUTS = ("mmi", "disfa", "bp4d", "ckplus")
TOP = {
    "mmi": ("Sessions",),
    "disfa": ("ActionUnit_Labels", "Videos_LeftCamera", "Videos_RightCamera"),
    "bp4d": ("AUCoding", "Sequences"),
    "ckplus": ("cohn-kanade-images", "FACS"),
}
DISFA_AUS = ("1", "2", "4", "5", "6", "9", "12", "15", "17", "20", "25", "26")
BP4D_AUS = ("1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24")

Rendered = tuple[ClipPlan, Iterator[np.ndarray]]


def _level(v: np.ndarray) -> np.ndarray:
    """Drawn intensity in [0, 1] -> FACS intensity 0..5 (A..E = 1..5)."""
    return np.clip(np.ceil(np.asarray(v) * 5 - 1e-9), 0, 5).astype(int)


def _tmp(path: Path) -> Path:
    """The name a file is written under before it is renamed into place (the extension kept:
    OpenCV picks the format by it)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def write_disfa_subject(root: Path, subject: int, fps: float, size, clips: list[Rendered]) -> int:
    """One subject: its clips in a row as one video per camera, one label file per AU."""
    name = disfa_subject(subject)
    videos = {}
    for folder, prefix, flip in (
        ("Videos_LeftCamera", "LeftVideo", False),
        ("Videos_RightCamera", "RightVideo", True),
    ):
        path = root / folder / f"{prefix}{name}_comp.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        videos[path] = (AviWriter(_tmp(path), fps, size), flip)
    levels: dict[str, list[np.ndarray]] = {au: [] for au in DISFA_AUS}
    frames = 0
    try:
        for plan, frame_iter in clips:
            for frame in frame_iter:
                for writer, flip in videos.values():
                    writer.write(cv2.flip(frame, 1) if flip else frame)
            for au in DISFA_AUS:
                levels[au].append(_level(plan.intensity.get(au, np.zeros(plan.frames))))
            frames += plan.frames
    finally:
        for writer, _ in videos.values():
            writer.close()
    labels = root / "ActionUnit_Labels" / name
    labels.mkdir(parents=True, exist_ok=True)
    for au in DISFA_AUS:
        values = np.concatenate(levels[au])
        text = "".join(f"{i + 1},{v}\n" for i, v in enumerate(values.tolist()))
        write_text(labels / f"{name}_au{au}.txt", text)
    for path, (writer, _) in videos.items():
        os.replace(writer.path, path)
    return frames


# The real corpora's subject ids (BP4D: 23 women, 18 men; DISFA: SN001-SN032 less five), so
# that the published folds (facs split --protocol) apply to a drawn corpus of up to 41 / 27
# subjects; beyond, new ids follow.
BP4D_IDS = [f"{g}{i:03d}" for i in range(1, 24) for g in ("F", "M") if g == "F" or i <= 18]
DISFA_IDS = [f"SN{i:03d}" for i in range(1, 33) if i not in (14, 15, 19, 20, 22)]


def bp4d_subject(subject: int) -> str:
    if subject <= len(BP4D_IDS):
        return BP4D_IDS[subject - 1]
    return f"{'F' if subject % 2 else 'M'}{subject:03d}"


def disfa_subject(subject: int) -> str:
    return DISFA_IDS[subject - 1] if subject <= len(DISFA_IDS) else f"SN{subject + 5:03d}"


def write_bp4d_clip(root: Path, subject: int, clip: int, rendered: Rendered, rng) -> int:
    """One task: the frames as numbered JPEGs, the occurrence CSV with its 9s."""
    plan, frame_iter = rendered
    name, task = bp4d_subject(subject), f"T{clip + 1}"
    folder = root / "Sequences" / name / task
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frame_iter):
        path = folder / f"{i + 1}.jpg"
        cv2.imwrite(os.fspath(_tmp(path)), frame)
        os.replace(_tmp(path), path)
    n = plan.frames
    coded = range(2, n - 2)  # BP4D codes a stretch of each task, not every frame of it
    drawn = [au for au in BP4D_AUS if au in AUS]  # the others (10, 14, 23, 24) stay 9
    cells = {au: (plan.intensity[au] > 0).astype(int) if au in plan.intensity else np.zeros(n, int)
             for au in drawn}  # fmt: skip
    if drawn:
        au = drawn[int(rng.integers(len(drawn)))]
        start = int(rng.integers(2, max(3, n - 2 - n // 6)))
        cells[au][start : start + n // 6] = 9  # a stretch the coders left out
    header = ["0", *BP4D_AUS]
    lines = [",".join(header)]
    for t in coded:
        row = [str(t + 1)] + [str(cells[au][t]) if au in cells else "9" for au in BP4D_AUS]
        lines.append(",".join(row))
    csv = root / "AUCoding" / "AU_OCC" / f"{name}_{task}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    write_text(csv, "\n".join(lines) + "\n")
    return n


def write_ckplus_clip(root: Path, subject: int, clip: int, rendered: Rendered) -> int:
    """One session: neutral to the first expression's apex as grey PNGs, the peak's coding."""
    plan, frame_iter = rendered
    events = [e for e in plan.events if set(e.aus) - {"45"}]
    if events:
        first = events[0]
        onset = min(c[0] for c in first.courses.values())
        apex = max(c[1] for c in first.courses.values())
        start, end = max(0, onset - 3), apex
    else:
        start, end = 0, min(plan.frames, 12) - 1
    name, session = f"S{subject:03d}", f"{clip + 1:03d}"
    folder = root / "cohn-kanade-images" / name / session
    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for i, frame in enumerate(frame_iter):
        if i < start:
            continue
        if i > end:
            break
        k += 1
        path = folder / f"{name}_{session}_{k:08d}.png"
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(os.fspath(_tmp(path)), grey)
        os.replace(_tmp(path), path)
    if events:
        peak = {au: int(_level(v[end])) for au, v in plan.intensity.items() if v[end] > 0}
        text = "".join(f"   {float(au):.7e}   {float(peak[au]):.7e}\n" for au in sort_codes(peak))
        facs = root / "FACS" / name / session / f"{name}_{session}_{k:08d}_facs.txt"
        facs.parent.mkdir(parents=True, exist_ok=True)
        write_text(facs, text)
    return k
