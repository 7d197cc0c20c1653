"""What happens in a synthetic clip: its length, its AU events and their intensity courses.

A clip starts neutral, then holds 1-3 events one after another; an event is a set of AUs (one
alone or a natural combination) sharing an onset-apex-offset course, each AU with its own peak
and a little timing jitter. Blinks (AU45) are sprinkled into the gaps like spontaneous blinks.
Events are laid out until the clip is full, so the share of active frames does not depend on
the clip's length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUS: list[str] = ["1", "2", "4", "5", "6", "7", "9", "12", "15", "17", "20", "25", "26", "27"]
AUS += ["43", "45"]

FPS = 25.0
MIN_FRAMES, MAX_FRAMES = 60, 150

# (AU set, weight). Every AU also occurs alone, so none is always tied to another.
TEMPLATES: list[tuple[tuple[str, ...], float]] = [
    *[((au,), 1.0) for au in AUS if au not in ("43", "45")],
    (("43",), 1.5),
    (("45",), 0.5),
    (("6", "12"), 1.2),
    (("6", "12", "25"), 0.7),
    (("12", "25"), 0.5),
    (("12", "25", "26"), 0.4),
    (("1", "2"), 1.0),
    (("1", "2", "5"), 0.5),
    (("1", "2", "5", "26"), 0.4),
    (("1", "2", "5", "25", "26"), 0.5),
    (("25", "26"), 0.9),
    (("25", "27"), 0.5),
    (("1", "2", "25", "27"), 0.4),
    (("4", "7"), 0.9),
    (("4", "9"), 0.4),
    (("1", "4", "15"), 0.5),
    (("15", "17"), 0.6),
    (("4", "7", "17"), 0.3),
    (("20", "25"), 0.7),
    (("9", "15", "17"), 0.3),
    (("6", "7", "12"), 0.3),
]

# AUs that change the eye aperture: blinks are not put on top of them.
_EYE_AUS = {"5", "7", "43", "45"}


@dataclass
class Event:
    aus: tuple[str, ...]
    # per AU: (onset, apex, offset) 0-based frame indices and peak intensity
    courses: dict[str, tuple[int, int, int, float]]


@dataclass
class ClipPlan:
    frames: int
    events: list[Event]
    intensity: dict[str, np.ndarray]  # AU -> per-frame intensity in [0, 1], only AUs used


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def course(n: int, onset: int, rise_end: int, fall_start: int, offset: int, peak: float):
    """Intensity over n frames: zero outside [onset, offset], a smooth rise to a plateau whose
    single maximum (the apex) is its middle frame, and a smooth fall. Active frames start at a
    trace level (15 % of the peak), as a FACS coder marks an onset when the change shows."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    apex = (rise_end + fall_start) // 2
    half = max(1.0, (fall_start - rise_end) / 2.0)
    rise = 0.15 + 0.85 * _smooth((t - onset + 1) / (rise_end - onset + 1))
    fall = 0.15 + 0.85 * _smooth((offset - t + 1) / (offset - fall_start + 1))
    plateau = 1.0 - 0.04 * np.abs(t - apex) / half
    out = np.where((t >= onset) & (t < rise_end), rise, out)
    out = np.where((t >= rise_end) & (t <= fall_start), plateau, out)
    out = np.where((t > fall_start) & (t <= offset), fall, out)
    out[apex] = 1.0
    return np.minimum(out, 1.0) * peak, apex


def _template_weights() -> np.ndarray:
    w = np.array([w for _, w in TEMPLATES], dtype=np.float64)
    return w / w.sum()


def plan_clip(rng: np.random.Generator) -> ClipPlan:
    n = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    weights = _template_weights()
    intensity: dict[str, np.ndarray] = {}
    events: list[Event] = []
    busy = np.zeros(n, dtype=bool)  # frames covered by an eye-aperture event
    t = neutral = int(rng.integers(8, 21))  # neutral start
    while True:
        aus = TEMPLATES[int(rng.choice(len(TEMPLATES), p=weights))][0]
        if aus == ("43",):
            rise, hold, fall = rng.integers(3, 7), rng.integers(12, 40), rng.integers(3, 7)
        elif aus == ("45",):
            rise, hold, fall = rng.integers(2, 4), rng.integers(1, 3), rng.integers(2, 5)
        else:
            rise, hold, fall = rng.integers(5, 13), rng.integers(6, 28), rng.integers(6, 15)
        start = t
        if start + int(rise + hold + fall) + 3 > n:
            if events:
                break
            hold = max(1, n - 3 - start - int(rise + fall))  # the first event always fits
        length = int(rise + hold + fall)
        ev = Event(aus=aus, courses={})
        for au in aus:
            j = 0 if len(aus) == 1 else int(rng.integers(-1, 3))
            onset = start + max(0, j)
            rise_end = onset + int(rise)
            fall_start = rise_end + int(hold)
            offset = min(n - 2, fall_start + int(fall) + int(rng.integers(-2, 3)))
            offset = max(offset, fall_start + 1)
            peak = float(rng.uniform(0.65, 1.0))
            values, apex = course(n, onset, rise_end, fall_start, offset, peak)
            cur = intensity.setdefault(au, np.zeros(n))
            np.maximum(cur, values, out=cur)
            ev.courses[au] = (onset, apex, offset, peak)
            if au in _EYE_AUS:
                busy[onset : offset + 1] = True
        events.append(ev)
        # an AU's offset may run up to 4 frames past `length` (jitter): the next event starts
        # at least 5 frames after that, so one AU's events never touch
        t = start + length + int(rng.integers(9, 18))
    _add_blinks(rng, n, intensity, events, busy, first=neutral)
    events.sort(key=lambda e: min(c[0] for c in e.courses.values()))
    return ClipPlan(frames=n, events=events, intensity=intensity)


def _add_blinks(rng, n, intensity, events, busy, first: int) -> None:
    """Spontaneous blinks (AU45) at random free moments after the neutral start, never on an
    eye-aperture event."""
    for _ in range(int(rng.integers(0, 3))):
        length = int(rng.integers(5, 9))
        onset = int(rng.integers(first, n - length - 1))
        offset = onset + length - 1
        if busy[max(0, onset - 5) : offset + 6].any():
            continue
        rise_end = onset + int(rng.integers(2, 4))
        fall_start = min(offset - 1, rise_end + int(rng.integers(0, 2)))
        peak = float(rng.uniform(0.85, 1.0))
        values, apex = course(n, onset, rise_end, fall_start, offset, peak)
        cur = intensity.setdefault("45", np.zeros(n))
        np.maximum(cur, values, out=cur)
        events.append(Event(aus=("45",), courses={"45": (onset, apex, offset, peak)}))
        busy[onset : offset + 1] = True
