"""A result as the per-frame table of OpenFace's FeatureExtraction: what `facs analyze` writes
and what the web demo and the REST API export (`?format=csv`), the same bytes for the same
result.

    frame, timestamp, confidence, success, AU01_p, AU02_p, ..., AU01_c, AU02_c, ...

`frame` counts from 0, `timestamp = frame / fps` (0 for a still), `success` 0 where no face was
found (its probabilities are 0), `_p` the probability of each AU, `_c` 1 where it reaches the
model's threshold. Probabilities are written with 4 decimals.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from facs.aus import column_prefix


def result_table(result: dict) -> pd.DataFrame:
    labels = result["labels"]
    rows = result["per_frame"]
    n = len(rows)
    probs = np.array([r["probs"] for r in rows], dtype=np.float64).reshape(n, len(labels))
    thr = np.array([result["thresholds"][c] for c in labels], dtype=np.float64)
    fps = float(result["fps"])
    frame = np.arange(n)
    data = {
        "frame": frame,
        "timestamp": frame / fps if fps else np.zeros(n),
        "confidence": [r["confidence"] for r in rows],
        "success": [int(r["face"]) for r in rows],
    }
    for j, c in enumerate(labels):
        data[f"{column_prefix(c)}_p"] = probs[:, j]
    for j, c in enumerate(labels):
        data[f"{column_prefix(c)}_c"] = (probs[:, j] >= thr[j]).astype(int)
    return pd.DataFrame(data)


def result_csv(result: dict) -> str:
    buf = io.StringIO()
    result_table(result).to_csv(buf, index=False, float_format="%.4f")
    return buf.getvalue()
