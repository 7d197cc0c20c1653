"""Metrics equal scikit-learn's (and the written-out formulas) on a small hand-made case."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, hamming_loss, jaccard_score, precision_score, recall_score

from facs.evaluation.metrics import (
    binarize,
    evaluate_scores,
    frequency_baseline,
)
from facs.training.thresholds import calibrate


def hamming_score_by_hand(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Godbole & Sarawagi's formula written out, to check the scikit-learn convention in tests."""
    scores = []
    for t, p in zip(np.asarray(y_true, bool), np.asarray(y_pred, bool), strict=True):
        union = np.logical_or(t, p).sum()
        scores.append(1.0 if union == 0 else np.logical_and(t, p).sum() / union)
    return float(np.mean(scores))


def approx(x):
    # The metrics JSON rounds to 6 decimals (byte-identical reruns).
    return pytest.approx(x, abs=1e-6)


LABELS = ["1", "2", "12", "25"]
# Six frames; frame 2 has no true and no predicted label, frame 4 no true label but a prediction,
# label "2" never occurs in the truth (support 0).
Y = np.array(
    [
        [1, 0, 1, 0],
        [0, 0, 1, 1],
        [0, 0, 0, 0],
        [1, 0, 0, 1],
        [0, 0, 0, 0],
        [1, 0, 1, 1],
    ],
    np.uint8,
)
P = np.array(
    [
        [0.9, 0.1, 0.8, 0.2],
        [0.2, 0.1, 0.4, 0.9],
        [0.1, 0.2, 0.3, 0.1],
        [0.7, 0.1, 0.1, 0.3],
        [0.1, 0.6, 0.2, 0.1],
        [0.4, 0.0, 0.9, 0.8],
    ]
)


def test_hand_made_case_matches_sklearn_and_formulas():
    m = evaluate_scores(Y, P, LABELS)
    Z = binarize(P)
    s = m["summary"]
    # Macro averages over labels present in the truth (1, 12, 25), as the docstring says.
    present = [0, 2, 3]
    assert s["precision_macro"] == approx(
        precision_score(Y[:, present], Z[:, present], average="macro", zero_division=0)
    )
    assert s["recall_macro"] == approx(
        recall_score(Y[:, present], Z[:, present], average="macro", zero_division=0)
    )
    assert s["f1_macro"] == approx(
        f1_score(Y[:, present], Z[:, present], average="macro", zero_division=0)
    )
    assert s["f1_micro"] == approx(f1_score(Y, Z, average="micro"))
    assert s["hamming_loss"] == approx(hamming_loss(Y, Z))
    js = jaccard_score(Y, Z, average="samples", zero_division=1.0)
    assert s["hamming_score"] == approx(js)
    assert s["hamming_score"] == approx(hamming_score_by_hand(Y, Z))
    # By hand: per-frame |Y&Z|/|Y|Z| = 1, 1/2, 1 (empty/empty), 1/2, 0 (empty truth), 2/3.
    assert s["hamming_score"] == approx((1 + 0.5 + 1 + 0.5 + 0 + 2 / 3) / 6)
    # Label "2": no support, one false positive, precision 0, AUC undefined.
    pl = m["per_label"]["2"]
    assert pl["support"] == 0 and pl["predicted"] == 1 and pl["roc_auc"] is None
    assert pl["precision"] == 0.0
    # Label "1": TP 2 (frames 0, 3), FN 1 (frame 5): recall 2/3, precision 1.
    assert m["per_label"]["1"]["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["per_label"]["1"]["precision"] == 1.0
    assert m["per_label"]["1"]["roc_auc"] == approx(1.0)
    assert s["labels_present"] == 3 and s["frames"] == 6


def test_thresholds_per_label_and_fixed():
    m = evaluate_scores(Y, P, LABELS, thresholds=np.array([0.3, 0.5, 0.35, 0.5]))
    assert m["per_label"]["1"]["recall"] == 1.0  # 0.4 >= 0.3 now
    assert m["per_label"]["12"]["recall"] == 1.0
    t = calibrate(Y, P, "f1")
    assert t[1] == 0.5  # one class only: stays at 0.5
    cal = evaluate_scores(Y, P, LABELS, thresholds=t)["summary"]["f1_macro"]
    assert cal == approx(1.0)  # separable on the frames it was fitted on
    ty = calibrate(Y, P, "youden")
    assert evaluate_scores(Y, P, LABELS, thresholds=ty)["summary"]["f1_macro"] == approx(1.0)


def test_frequency_baseline_predicts_majority():
    train = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]], np.uint8)
    b = frequency_baseline(train, 6)
    assert b.shape == (6, 4)
    z = binarize(b)
    assert z[:, 0].all() and z[:, 2].all() and not z[:, 1].any() and not z[:, 3].any()
    s = evaluate_scores(Y, b, LABELS)["summary"]
    assert s["roc_auc_macro"] == approx(0.5)
