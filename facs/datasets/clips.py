"""An annotated clip as every corpus reader gives it (MMI, DISFA, BP4D, CK+, the drawn corpus),
and its per-frame labels: what the index stores and the LMDB/evaluation steps read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facs.aus import UNKNOWN, sort_codes
from facs.errors import FacsError
from facs.fileio import quiet_native_stderr
from facs.video import probe

LABEL_MODES = ("span", "markers")
Event = tuple[int | None, int | None, int | None]  # (onset, apex, offset), 0-based
Span = tuple[int, int]  # inclusive frame range, 0-based
ALL = "*"  # key of `Clip.unknown` for frames where no label is coded


@dataclass
class Clip:
    """One annotated clip. `video` and `xml` are paths relative to the data root (posix);
    `video` may be a folder of images (BP4D, CK+ sequences).

    What the coding does not cover (docs/formats.md §2): `coded` lists the labels the clip's
    coding covers (None: every label, MMI's convention that an AU the OAO file does not list
    is absent); `unknown` maps a code (or "*": every label) to inclusive frame spans that were
    not coded (BP4D's 9, CK+'s frames between the neutral first and the peak last).
    `intensity` keeps a corpus's FACS intensities (DISFA 0-5, CK+'s peak) as runs
    (start, end, value) of non-zero frames.
    """

    id: str
    session: str
    subject: str
    video: str
    xml: str
    fps: float
    frames: int
    width: int
    height: int
    events: dict[str, list[Event]] = field(default_factory=dict)
    coded: list[str] | None = None
    unknown: dict[str, list[Span]] = field(default_factory=dict)
    intensity: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["events"] = {code: [list(e) for e in evs] for code, evs in self.events.items()}
        # Fully coded clips (MMI, DISFA, the drawn corpus) keep the index format they had.
        if self.coded is None:
            del d["coded"]
        if self.unknown:
            d["unknown"] = {code: [list(s) for s in spans] for code, spans in self.unknown.items()}
        else:
            del d["unknown"]
        if self.intensity:
            d["intensity"] = {c: [list(r) for r in runs] for c, runs in self.intensity.items()}
        else:
            del d["intensity"]
        return d

    @property
    def has_unknown(self) -> bool:
        return self.coded is not None or any(self.unknown.values())

    @classmethod
    def from_json(cls, d: dict) -> Clip:
        d = dict(d)
        d["events"] = {
            str(code): [tuple(e) for e in evs] for code, evs in d.get("events", {}).items()
        }
        d["session"], d["subject"] = str(d["session"]), str(d["subject"])
        d.setdefault("coded", None)
        d["unknown"] = {
            str(code): [(int(a), int(b)) for a, b in spans]
            for code, spans in d.get("unknown", {}).items()
        }
        d["intensity"] = {
            str(code): [(int(a), int(b), int(v)) for a, b, v in runs]
            for code, runs in d.get("intensity", {}).items()
        }
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass
class Skipped:
    """A clip the index left out, and why (no per-frame annotation, or --skip-bad)."""

    path: str
    reason: str


def rel(path: Path, base: Path) -> str:
    """`path` relative to `base`, posix (how an index names its files)."""
    return path.relative_to(base).as_posix()


def probe_video(path: Path):
    """facs.video.probe without FFmpeg's own stderr chatter."""
    with quiet_native_stderr():
        return probe(path)


def label_list(clips: list[Clip]) -> list[str]:
    """Codes active (with at least one event) in some clip, sorted by AU number then letter."""
    return sort_codes(code for c in clips for code, evs in c.events.items() if evs)


def _first(e: Event) -> int:
    return next(f for f in e if f is not None)


def _last(e: Event) -> int:
    return next(f for f in reversed(e) if f is not None)


def event_spans(events: list[Event], frames: int) -> list[tuple[int, int]]:
    """Inclusive (start, end) frame spans of one AU's events, with the missing-marker rules."""
    evs = sorted((e for e in events if any(f is not None for f in e)), key=_first)
    spans = []
    for i, (onset, _apex, offset) in enumerate(evs):
        if onset is not None:
            start = onset
        else:
            start = _last(evs[i - 1]) + 1 if i > 0 else 0
        if offset is not None:
            end = offset
        else:
            end = _first(evs[i + 1]) - 1 if i + 1 < len(evs) else frames - 1
        # a late apex/offset before the start (annotation slip) still marks its own frames
        lo, hi = min(start, _first(evs[i])), max(end, _last(evs[i]))
        spans.append((max(lo, 0), min(hi, frames - 1)))
    return spans


def frame_labels(clip: Clip, labels: list[str], mode: str = "span") -> np.ndarray:
    """frames x len(labels) int8 matrix: 1 where the label is active, 0 where it is not,
    UNKNOWN (-1) where the clip's coding does not say (never in MMI or the drawn corpus).

    `span`: every frame from onset to offset (MMI's rules for missing markers: facs.datasets.mmi).
    `markers`: only the annotated marker frames (as the original work labelled them).
    Codes of the clip that are not in `labels` are ignored.
    """
    if mode not in LABEL_MODES:
        raise FacsError(f"label mode {mode!r}: expected one of {', '.join(LABEL_MODES)}")
    y = np.zeros((clip.frames, len(labels)), dtype=np.int8)
    for j, code in enumerate(labels):
        events = clip.events.get(code) or []
        if mode == "markers":
            for e in events:
                for f in e:
                    if f is not None and 0 <= f < clip.frames:
                        y[f, j] = 1
        else:
            for start, end in event_spans(events, clip.frames):
                y[start : end + 1, j] = 1
    if clip.has_unknown:
        _mark_unknown(y, clip, labels)
    return y


def _mark_unknown(y: np.ndarray, clip: Clip, labels: list[str]) -> None:
    for j, code in enumerate(labels):
        if clip.coded is not None and code not in clip.coded:
            y[:, j] = UNKNOWN
    for code, spans in clip.unknown.items():
        cols = slice(None) if code == ALL else [j for j, c in enumerate(labels) if c == code]
        for start, end in spans:
            y[max(start, 0) : end + 1, cols] = UNKNOWN


def frame_intensity(clip: Clip, labels: list[str]) -> np.ndarray:
    """frames x len(labels) int8 FACS intensities (0 where the corpus gives none)."""
    out = np.zeros((clip.frames, len(labels)), dtype=np.int8)
    for j, code in enumerate(labels):
        for start, end, value in clip.intensity.get(code, []):
            out[start : end + 1, j] = value
    return out


def intensity_runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """Per-frame intensities -> (start, end, value) runs of equal non-zero values."""
    values = np.asarray(values)
    runs: list[tuple[int, int, int]] = []
    for t, v in enumerate(values.tolist()):
        if v and runs and runs[-1][2] == v and runs[-1][1] == t - 1:
            runs[-1] = (runs[-1][0], t, v)
        elif v:
            runs.append((t, t, int(v)))
    return runs
