"""The "unknown" label state (-1: a cell the corpus did not code) end to end: an unknown cell
never changes a loss, its gradient, a metric, a threshold or a fusion fit, whatever the score
or the truth behind it; MMI-style fully coded labels give the numbers they always gave."""

from __future__ import annotations

import numpy as np
import pytest
from test_losses import loss_net, run

from facs.aus import UNKNOWN
from facs.datasets.clips import ALL, Clip, frame_labels
from facs.evaluation.metrics import evaluate_scores, frequency_baseline
from facs.training.fusion import fit_fusion
from facs.training.thresholds import calibrate

RNG = np.random.default_rng(7)


def _labels(n=400, L=4, unknown=0.2):
    y = (RNG.random((n, L)) < 0.3).astype(np.int8)
    mask = RNG.random((n, L)) < unknown
    return y, mask


def test_frame_labels_carry_unknown_cells():
    ev = {"1": [(2, 3, 5)], "12": [(0, 1, 9)]}
    clip = Clip("c", "s", "s", "v", "x", 25.0, 10, 8, 8, ev, coded=["1", "12"],
                unknown={"1": [(4, 6)], ALL: [(9, 9)]})  # fmt: skip
    y = frame_labels(clip, ["1", "4", "12"])
    assert y.dtype == np.int8
    assert y[:, 0].tolist() == [0, 0, 1, 1, -1, -1, -1, 0, 0, -1]
    assert (y[:, 1] == UNKNOWN).all()  # not among the clip's coded labels
    assert y[:, 2].tolist() == [1] * 9 + [-1]
    # the JSON round trip keeps it; a fully coded clip writes no extra keys
    assert frame_labels(Clip.from_json(clip.to_json()), ["1", "4", "12"]).tolist() == y.tolist()
    plain = Clip("c", "s", "s", "v", "x", 25.0, 10, 8, 8, ev)
    assert "coded" not in plain.to_json() and "unknown" not in plain.to_json()
    assert not plain.has_unknown and (frame_labels(plain, ["1"]) >= 0).all()


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_an_unknown_cell_never_changes_a_metric(value):
    y, mask = _labels()
    probs = RNG.random(y.shape)
    y_unknown = np.where(mask, UNKNOWN, y).astype(np.int8)
    base = evaluate_scores(y_unknown, probs, list("abcd"), 0.5)
    # the score on an unknown cell set to 0 or 1: the same numbers
    other = probs.copy()
    other[mask] = value
    assert evaluate_scores(y_unknown, other, list("abcd"), 0.5) == base
    # = each label measured on its coded frames alone
    for j, c in enumerate("abcd"):
        rows = ~mask[:, j]
        alone = evaluate_scores(y[rows, j : j + 1], probs[rows, j : j + 1], [c], 0.5)
        for k in ("precision", "recall", "f1", "roc_auc", "support", "predicted"):
            assert base["per_label"][c][k] == pytest.approx(alone["per_label"][c][k], abs=1e-6)
        assert base["per_label"][c]["unknown"] == int(mask[:, j].sum())
    assert base["summary"]["unknown_cells"] == int(mask.sum())
    assert "unknown_cells" not in evaluate_scores(y, probs, list("abcd"), 0.5)["summary"]


def test_frame_measures_use_coded_cells_only():
    y = np.array([[1, -1], [0, 1], [-1, -1]], np.int8)
    p = np.array([[0.9, 0.9], [0.9, 0.1], [0.9, 0.9]])
    s = evaluate_scores(y, p, ["a", "b"], 0.5)["summary"]
    assert s["frames"] == 2  # the third frame has no coded cell
    assert s["hamming_score"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["hamming_loss"] == pytest.approx(2 / 3)  # 2 wrong of 3 coded cells
    assert s["subset_accuracy"] == pytest.approx(0.5)
    assert frequency_baseline(y, 1)[0].tolist() == [0.5, 1.0]


def test_an_unknown_cell_never_changes_thresholds_or_fusion():
    y, mask = _labels(n=300, L=3)
    y_unknown = np.where(mask, UNKNOWN, y).astype(np.int8)
    scores = {"spatial": RNG.random(y.shape), "flow": RNG.random(y.shape)}
    t = calibrate(y_unknown, scores["spatial"], "f1")
    noisy = {k: v.copy() for k, v in scores.items()}
    for v in noisy.values():
        v[mask] = RNG.random(mask.sum())
    assert calibrate(y_unknown, noisy["spatial"], "f1").tolist() == t.tolist()
    for j in range(3):
        rows = ~mask[:, j]
        alone = calibrate(y[rows, j : j + 1], scores["spatial"][rows, j : j + 1], "f1")
        assert alone[0] == t[j]
    spec, _ = fit_fusion(scores, y_unknown, method="average")
    assert spec["method"] == "average"
    spec, _ = fit_fusion(scores, y_unknown, method="logreg")
    assert all(c is None or np.isfinite(c).all() for c in spec["coef"])


SIGMOID = """layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "y"
  top: "loss" loss_param { ignore_label: -1 %s } }"""
SOFTMAX = """layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss"
  loss_param { ignore_label: -1 } }"""


@pytest.mark.parametrize("norm", ["", "normalization: VALID", "normalization: FULL"])
def test_an_unknown_cell_never_changes_the_sigmoid_loss(norm):
    x = RNG.normal(0, 3, (6, 4)).astype(np.float32)
    y = (RNG.random((6, 4)) < 0.4).astype(np.float32)
    y[1, 2] = y[4, 0] = UNKNOWN
    net = loss_net(SIGMOID % norm, x.shape, y.shape)
    loss, grad = run(net, x, y)
    x2 = x.copy()
    x2[1, 2], x2[4, 0] = 40.0, -40.0  # any score on the unknown cells
    loss2, grad2 = run(net, x2, y)
    assert loss2 == loss and np.array_equal(grad2, grad)
    assert grad[1, 2] == 0 and grad[4, 0] == 0


def test_one_vs_all_skips_unknown_frames():
    x = RNG.normal(0, 2, (5, 2)).astype(np.float32)
    target = np.array([1, 0, UNKNOWN, 1, UNKNOWN], np.float32)
    net = loss_net(SOFTMAX, x.shape, target.shape)
    loss, grad = run(net, x, target)
    known = target != UNKNOWN
    alone, agrad = run(loss_net(SOFTMAX, (3, 2), (3,)), x[known], target[known])
    assert loss == pytest.approx(alone, rel=1e-6)  # VALID: averaged over the coded frames
    assert np.allclose(grad[known], agrad, rtol=1e-6) and (grad[~known] == 0).all()
