"""A result as the per-frame table of OpenFace's FeatureExtraction: what `facs analyze` writes
and what the web demo and the REST API export (`?format=csv`), the same bytes for the same
result.

    frame, timestamp, confidence, success, AU01_p, AU02_p, ..., AU01_c, AU02_c, ...

`frame` counts from 0, `timestamp = frame / fps` (0 for a still), `success` 0 where no face was
found (its probabilities are 0), `_p` the probability of each AU, `_c` 1 where it reaches the
model's threshold. Probabilities are written with 4 decimals. The table is made a chunk of rows
at a time (`csv_chunks`), so a long video's is written without holding it in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from facs.aus import column_prefix


def frame_table(meta: dict, first: int, probs, confidence, success) -> pd.DataFrame:
    """Rows first.. of the table: probabilities (n x L, already rounded as the JSON result
    holds them), confidences and success flags of those frames; `meta` the result's labels,
    thresholds and fps."""
    labels = meta["labels"]
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(labels))
    n = len(probs)
    thr = np.array([meta["thresholds"][c] for c in labels], dtype=np.float64)
    fps = float(meta["fps"])
    frame = np.arange(first, first + n)
    data = {
        "frame": frame,
        "timestamp": frame / fps if fps else np.zeros(n),
        "confidence": np.asarray(confidence, dtype=np.float64),
        "success": np.asarray(success, dtype=int),
    }
    for j, c in enumerate(labels):
        data[f"{column_prefix(c)}_p"] = probs[:, j]
    for j, c in enumerate(labels):
        data[f"{column_prefix(c)}_c"] = (probs[:, j] >= thr[j]).astype(int)
    return pd.DataFrame(data)


def csv_chunks(meta: dict, rows: Iterable[tuple]) -> Iterator[str]:
    """CSV text, a chunk at a time, of rows given as (first frame, probs, confidence,
    success) chunks; the header comes with the first."""
    header = True
    for first, probs, confidence, success in rows:
        buf = io.StringIO()
        frame_table(meta, first, probs, confidence, success).to_csv(
            buf, index=False, float_format="%.4f", header=header
        )
        header = False
        yield buf.getvalue()
    if header:  # no frame at all: the header alone
        yield frame_table(meta, 0, [], [], []).to_csv(index=False, float_format="%.4f")


def result_csv(result: dict) -> str:
    rows = result["per_frame"]
    chunk = (
        0,
        [r["probs"] for r in rows],
        [r["confidence"] for r in rows],
        [int(r["face"]) for r in rows],
    )
    return "".join(csv_chunks(result, [chunk]))
