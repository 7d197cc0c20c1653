"""Caffe's lr policies, SGD momentum update and gradient clipping vs hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from google.protobuf import text_format

from facs.caffe import caffe_pb2, sgd
from facs.errors import FacsError


def solver(text: str) -> caffe_pb2.SolverParameter:
    return text_format.Parse(text, caffe_pb2.SolverParameter())


COMMON = "base_lr: 0.01 gamma: 0.1 power: 0.5 stepsize: 3 max_iter: 10 "


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("fixed", lambda it: 0.01),
        ("step", lambda it: 0.01 * 0.1 ** (it // 3)),
        ("multistep", lambda it: 0.01 * 0.1 ** ((it >= 2) + (it >= 5))),
        ("exp", lambda it: 0.01 * 0.1**it),
        ("inv", lambda it: 0.01 * (1 + 0.1 * it) ** -0.5),
        ("poly", lambda it: 0.01 * (1 - it / 10) ** 0.5),
        ("sigmoid", lambda it: 0.01 / (1 + math.exp(-0.1 * (it - 3)))),
    ],
)
def test_lr_policy_matches_hand_computation(policy, expected):
    sp = solver(COMMON + f'lr_policy: "{policy}" stepvalue: 2 stepvalue: 5')
    sgd.check_policy(sp, "s.prototxt")
    # float32 fields (base_lr, gamma, power) make the values agree to float32 precision.
    got = [sgd.learning_rate(sp, it) for it in range(10)]
    want = [expected(it) for it in range(10)]
    assert got == pytest.approx(want, rel=1e-6)


def test_step_lr_by_hand():
    sp = solver('base_lr: 0.5 lr_policy: "step" gamma: 0.5 stepsize: 2')
    assert [sgd.learning_rate(sp, it) for it in range(6)] == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def test_policy_errors_name_the_solver():
    with pytest.raises(FacsError, match="s.prototxt: lr_policy 'step' needs 'stepsize'"):
        sgd.check_policy(solver('base_lr: 0.1 lr_policy: "step" gamma: 0.1'), "s.prototxt")
    with pytest.raises(FacsError, match="unknown lr_policy 'cosine'"):
        sgd.check_policy(solver('base_lr: 0.1 lr_policy: "cosine"'), "s.prototxt")


def test_one_caffe_momentum_update_by_hand():
    w = torch.tensor([1.0, -2.0], dtype=torch.float64)
    grad = torch.tensor([0.5, 0.25], dtype=torch.float64)
    hist = torch.tensor([0.1, 0.0], dtype=torch.float64)
    # base_lr 0.1 x lr_mult 2; weight_decay 0.01 x decay_mult 1; momentum 0.9
    sgd.sgd_step(w, grad, hist, local_lr=0.2, momentum=0.9, local_decay=0.01)
    # V = 0.9*V + 0.2*(g + 0.01*W):  0.09 + 0.2*0.51 = 0.192;  0 + 0.2*(0.25 - 0.02) = 0.046
    assert hist.tolist() == pytest.approx([0.192, 0.046], abs=1e-15)
    assert w.tolist() == pytest.approx([0.808, -2.046], abs=1e-15)
    # The learning rate sits inside the buffer: unlike torch.optim.SGD, changing lr later does
    # not rescale the momentum already accumulated.
    g2 = torch.zeros(2, dtype=torch.float64)
    sgd.sgd_step(w, g2, hist, local_lr=1000.0, momentum=0.9, local_decay=0.0)
    assert hist.tolist() == pytest.approx([0.1728, 0.0414], abs=1e-15)


def test_nesterov_and_l1_by_hand():
    w = torch.tensor([1.0], dtype=torch.float64)
    hist = torch.tensor([0.5], dtype=torch.float64)
    g = torch.tensor([0.2], dtype=torch.float64)
    sgd.sgd_step(w, g, hist, 0.1, 0.9, 0.5, regularization="L1", nesterov=True)
    # g' = 0.2 + 0.5*sign(1) = 0.7; V' = 0.45 + 0.07 = 0.52; W -= 1.9*0.52 - 0.9*0.5 = 0.538
    assert hist.item() == pytest.approx(0.52, abs=1e-15)
    assert w.item() == pytest.approx(1.0 - 0.538, abs=1e-15)


def test_clip_gradients_scales_jointly():
    a, b = torch.tensor([3.0]), torch.tensor([4.0])  # joint L2 norm 5
    assert sgd.clip_gradients([a, b], 10.0) is None
    assert sgd.clip_gradients([a, b], 2.5) == pytest.approx(0.5)
    assert (a.item(), b.item()) == (1.5, 2.0)
    assert sgd.clip_gradients([a, b], -1.0) is None  # Caffe's default: off
