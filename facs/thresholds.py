"""Decision thresholds: the report's fixed 0.5, or per label calibrated on validation frames.

`f1`: the threshold that maximises the label's F1 on validation (midpoint between neighbouring
scores, so a tiny shift of a test score does not flip the decision).
`youden`: the ROC point maximising TPR - FPR (Youden's J).
A label whose validation frames are all of one class keeps 0.5: there is nothing to calibrate on.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

METHODS = ("fixed", "f1", "youden")


def _f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)[:-1]
    k = int(np.argmax(f1))
    # thr[k] is the lowest score still predicted positive; move halfway to the next lower score.
    below = p[p < thr[k]]
    return float((thr[k] + below.max()) / 2) if below.size else float(thr[k])


def _youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, thr = roc_curve(y, p)
    k = int(np.argmax(tpr - fpr))
    t = float(thr[k])
    return 1.0 if not np.isfinite(t) else t


def calibrate(y_true: np.ndarray, probs: np.ndarray, method: str = "f1") -> np.ndarray:
    """Per-label thresholds (length L) from validation labels and scores."""
    y_true = np.asarray(y_true).astype(np.uint8)
    probs = np.asarray(probs, dtype=np.float64)
    L = y_true.shape[1]
    out = np.full(L, 0.5)
    if method == "fixed":
        return out
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose from {METHODS}")
    for j in range(L):
        y, p = y_true[:, j], probs[:, j]
        if 0 < y.sum() < len(y):
            t = _f1_threshold(y, p) if method == "f1" else _youden_threshold(y, p)
            out[j] = float(np.clip(t, 0.01, 0.99))
    return np.round(out, 6)


def as_dict(labels: list[str], thresholds: np.ndarray) -> dict[str, float]:
    return {code: float(t) for code, t in zip(labels, thresholds, strict=True)}


def from_dict(labels: list[str], d: dict[str, float] | None) -> np.ndarray:
    """Thresholds saved in model.json -> array in label order (0.5 where a label has none)."""
    d = d or {}
    return np.array([float(d.get(code, 0.5)) for code in labels])
