"""Per-frame codings (DISFA, BP4D) as the index's events: one (onset, apex, offset) per run."""

from __future__ import annotations

import numpy as np

from facs.datasets.clips import Event


def runs_to_events(active: np.ndarray, intensity: np.ndarray | None = None) -> list[Event]:
    """Maximal runs of True frames -> events (onset, apex, offset), 0-based and inclusive.

    The apex is the run's most intense frame (its middle when there is no intensity), so span
    mode gives back exactly `active` and markers mode marks onset, apex and offset.
    """
    active = np.asarray(active, dtype=bool)
    if not active.any():
        return []
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    events: list[Event] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if intensity is not None:
            apex = s + int(np.argmax(intensity[s : e + 1]))
        else:
            apex = (s + e) // 2
        events.append((s, apex, e))
    return events
