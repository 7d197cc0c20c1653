"""Decision thresholds: the report's fixed 0.5, or per label calibrated on validation frames.

`f1`: the threshold that maximises the label's F1 on validation (midpoint between neighbouring
scores, so a tiny shift of a test score does not flip the decision).
`youden`: the ROC point maximising TPR - FPR (Youden's J).
A label whose validation frames are all of one class keeps 0.5: there is nothing to calibrate on.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve
from sklearn.model_selection import GroupKFold, KFold

from facs.aus import UNKNOWN
from facs.evaluation.metrics import evaluate_scores

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
    """Per-label thresholds (length L) from validation labels and scores (each label on its
    coded frames)."""
    y_true = np.asarray(y_true).astype(np.int8)
    probs = np.asarray(probs, dtype=np.float64)
    L = y_true.shape[1]
    out = np.full(L, 0.5)
    if method == "fixed":
        return out
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose from {METHODS}")
    for j in range(L):
        coded = y_true[:, j] != UNKNOWN
        y, p = y_true[coded, j], probs[coded, j]
        if 0 < y.sum() < len(y):
            t = _f1_threshold(y, p) if method == "f1" else _youden_threshold(y, p)
            out[j] = float(np.clip(t, 0.01, 0.99))
    return np.round(out, 6)


def as_dict(labels: list[str], thresholds: np.ndarray) -> dict[str, float]:
    return {code: float(t) for code, t in zip(labels, thresholds, strict=True)}


def choose(
    y_true: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray | None = None,
    methods: tuple[str, ...] = METHODS,
) -> tuple[str, np.ndarray, dict[str, float]]:
    """Pick the threshold method by cross-validation over validation subjects (`groups`):
    calibrate on the other subjects, score macro F1 on the held-out ones. Returns the method,
    its thresholds fitted on all validation frames, and each method's cross-validated F1."""
    y_true = np.asarray(y_true).astype(np.int8)
    probs = np.asarray(probs, dtype=np.float64)
    n, n_labels = y_true.shape
    names = [str(j) for j in range(n_labels)]
    if groups is not None and len(set(groups)) >= 3:
        folds = list(GroupKFold(n_splits=min(5, len(set(groups)))).split(probs, groups=groups))
    else:
        folds = list(KFold(n_splits=min(5, max(n, 2))).split(probs))
    cv: dict[str, float] = {}
    for m in methods:
        pred = np.zeros_like(y_true)
        for tr, te in folds:
            t = calibrate(y_true[tr], probs[tr], m)
            pred[te] = (probs[te] >= t).astype(np.uint8)
        # Macro F1 of the pooled out-of-fold decisions (thresholds as probabilities 0/1).
        cv[m] = (
            evaluate_scores(y_true, pred.astype(np.float64), names)["summary"]["f1_macro"] or 0.0
        )
    # Ties go to the simplest: fixed, then f1, then youden (METHODS order).
    best = max(methods, key=lambda m: (round(cv[m], 4), -methods.index(m)))
    return best, calibrate(y_true, probs, best), cv
