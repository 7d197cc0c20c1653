"""Multi-label quality measures, computed with scikit-learn (DESIGN.md section 6).

Conventions, stated once:
- a label is predicted present when its probability is >= its threshold (0.5 unless calibrated);
- per-label precision / recall / F1 use `zero_division=0`; ROC-AUC is `None` for a label whose
  test frames are all of one class (undefined);
- macro averages (precision, recall, F1, ROC-AUC) run over the labels that occur in the test
  frames (support > 0): a label the test subjects never show has no recall to average;
- micro F1 pools every label's counts;
- multi-label accuracy is the Hamming score of Godbole & Sarawagi, mean over frames of
  |Y and Z| / |Y or Z| = `jaccard_score(average="samples", zero_division=1.0)`: a frame with
  no true and no predicted label counts as 1 (perfect agreement);
- Hamming loss is the fraction of wrong (frame, label) cells, `hamming_loss`;
- a cell the corpus did not code (UNKNOWN, -1: BP4D's 9, CK+'s frames between neutral and
  peak) counts nowhere: not in a label's support, counts or AUC, not in a frame's intersection
  or union, not in the Hamming loss's cells; a frame with no coded cell is left out of the
  frame-wise measures. Without unknown cells the numbers are scikit-learn's, unchanged.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    jaccard_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from facs.aus import UNKNOWN

SUMMARY_KEYS = (
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_micro",
    "roc_auc_macro",
    "hamming_score",
    "hamming_loss",
    "subset_accuracy",
)


def binarize(probs: np.ndarray, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """N x L probabilities -> N x L uint8 predictions (prob >= threshold, per label or global)."""
    t = np.asarray(thresholds, dtype=np.float64)
    return (np.asarray(probs, dtype=np.float64) >= t).astype(np.uint8)


def _round(x: float | None, digits: int = 6) -> float | None:
    # Rounded floats keep the metrics JSON byte-identical across runs despite summation order.
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def evaluate_scores(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    thresholds: float | np.ndarray = 0.5,
) -> dict:
    """All measures for one configuration: {"per_label": {code: {...}}, "summary": {...}}."""
    y_true = np.asarray(y_true).astype(np.int8)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.shape != probs.shape or y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(
            f"shape mismatch: labels {y_true.shape}, probs {probs.shape}, L={len(labels)}"
        )
    known = y_true != UNKNOWN
    if not known.all():
        return _evaluate_known(y_true, probs, labels, thresholds, known)
    y_true = y_true.astype(np.uint8)
    y_pred = binarize(probs, thresholds)
    if y_true.shape[1] == 1:
        # scikit-learn reads a single column as a binary target and reports both classes
        # (class 0 first): an all-zero second column keeps it a multi-label indicator.
        pad = np.zeros((len(y_true), 1), np.uint8)
        p, r, f, s = precision_recall_fscore_support(
            np.hstack([y_true, pad]), np.hstack([y_pred, pad]), average=None, zero_division=0
        )
        p, r, f, s = p[:1], r[:1], f[:1], s[:1]
    else:
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    per_label: dict[str, dict] = {}
    aucs = []
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
    for j, code in enumerate(labels):
        col = y_true[:, j]
        auc = None
        if 0 < col.sum() < len(col):
            auc = float(roc_auc_score(col, probs[:, j]))
            aucs.append(auc)
        per_label[code] = {
            "precision": _round(p[j]),
            "recall": _round(r[j]),
            "f1": _round(f[j]),
            "roc_auc": _round(auc),
            "support": int(s[j]),
            "predicted": int(y_pred[:, j].sum()),
            "threshold": _round(thr[j]),
        }
    present = s > 0
    summary = {
        "frames": int(len(y_true)),
        "labels_present": int(present.sum()),
        "precision_macro": _round(p[present].mean()) if present.any() else None,
        "recall_macro": _round(r[present].mean()) if present.any() else None,
        "f1_macro": _round(f[present].mean()) if present.any() else None,
        "f1_micro": _round(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "roc_auc_macro": _round(float(np.mean(aucs))) if aucs else None,
        "hamming_score": _round(_hamming_score(y_true, y_pred)),
        "hamming_loss": _round(hamming_loss(y_true, y_pred)),
        "subset_accuracy": _round(accuracy_score(y_true, y_pred)),
    }
    return {"per_label": per_label, "summary": summary}


def _evaluate_known(y_true, probs, labels, thresholds, known) -> dict:
    """evaluate_scores over the coded cells only (see the conventions above)."""
    y_pred = binarize(probs, thresholds)
    pos, pred = (y_true == 1) & known, (y_pred == 1) & known
    tp, fp, fn = (pos & pred).sum(0), (~pos & pred & known).sum(0), (pos & ~pred).sum(0)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
    per_label: dict[str, dict] = {}
    ps, rs, fs, aucs = [], [], [], []
    for j, code in enumerate(labels):
        p = tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] else 0.0
        r = tp[j] / (tp[j] + fn[j]) if tp[j] + fn[j] else 0.0
        f = 2 * tp[j] / (2 * tp[j] + fp[j] + fn[j]) if tp[j] + fp[j] + fn[j] else 0.0
        col, rows = y_true[known[:, j], j], known[:, j]
        auc = None
        if 0 < col.sum() < len(col):
            auc = float(roc_auc_score(col, probs[rows, j]))
            aucs.append(auc)
        if pos[:, j].any():
            ps.append(p), rs.append(r), fs.append(f)
        per_label[code] = {
            "precision": _round(p),
            "recall": _round(r),
            "f1": _round(f),
            "roc_auc": _round(auc),
            "support": int(pos[:, j].sum()),
            "predicted": int(pred[:, j].sum()),
            "threshold": _round(thr[j]),
            "unknown": int((~known[:, j]).sum()),
        }
    frames = known.any(axis=1)
    inter, union = (pos & pred).sum(1), (pos | pred).sum(1)
    jac = np.where(union > 0, inter / np.maximum(union, 1), 1.0)[frames]
    wrong = (pos != pred) & known
    micro = (
        2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
        if tp.sum() + fp.sum() + fn.sum()
        else 0.0
    )
    summary = {
        "frames": int(frames.sum()),
        "labels_present": len(fs),
        "precision_macro": _round(float(np.mean(ps))) if fs else None,
        "recall_macro": _round(float(np.mean(rs))) if fs else None,
        "f1_macro": _round(float(np.mean(fs))) if fs else None,
        "f1_micro": _round(micro),
        "roc_auc_macro": _round(float(np.mean(aucs))) if aucs else None,
        "hamming_score": _round(float(jac.mean())) if frames.any() else None,
        "hamming_loss": _round(wrong.sum() / known.sum()),
        "subset_accuracy": _round(float((~wrong[frames]).all(axis=1).mean()))
        if frames.any()
        else None,
        "unknown_cells": int((~known).sum()),
    }
    return {"per_label": per_label, "summary": summary}


def _hamming_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # scikit-learn's samplewise Jaccard refuses a single label column; an all-zero extra column
    # changes no intersection and no union.
    if y_true.shape[1] == 1:
        pad = np.zeros((len(y_true), 1), np.uint8)
        y_true, y_pred = np.hstack([y_true, pad]), np.hstack([y_pred, pad])
    return float(jaccard_score(y_true, y_pred, average="samples", zero_division=1.0))


def frequency_baseline(train_labels: np.ndarray, n: int) -> np.ndarray:
    """N x L 'probabilities' = each label's training prevalence over its coded frames
    (majority vote at 0.5)."""
    y = np.asarray(train_labels, dtype=np.float64)
    coded = y != UNKNOWN
    if coded.all():
        prev = y.mean(axis=0)
    else:
        prev = np.where(coded, y, 0).sum(axis=0) / np.maximum(coded.sum(axis=0), 1)
    return np.tile(prev, (n, 1))
