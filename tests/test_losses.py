"""Every loss layer's value *and gradient* against the formulas of Caffe's C++ (the
softmax_loss, sigmoid_cross_entropy_loss and euclidean_loss layers), on ordinary and on
saturated inputs, with every normalization mode, ignore_label and loss_weight; and the LRN's
hand-written backward against autograd.

Caffe's backward is not the derivative of its clamped forward: SoftmaxWithLoss clamps the
picked probability at FLT_MIN in the loss but its gradient is `prob - onehot` whatever the
clamp, so a saturated sample keeps learning. These tests hold facs to that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from facs.caffe import caffe_pb2
from facs.caffe.net import Net

FLT_MIN = np.float32(1.17549435e-38)


def loss_net(layer: str, x_shape, y_shape) -> Net:
    text = f"""
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims(x_shape)} }} }} }}
    layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ {dims(y_shape)} }} }} }}
    {layer}
    """
    return Net(text_format.Parse(text, caffe_pb2.NetParameter()), "TRAIN")


def dims(shape) -> str:
    return " ".join(f"dim: {d}" for d in shape)


def run(net: Net, x: np.ndarray, y: np.ndarray, grad_y: bool = False):
    """(loss, d loss / d x[, d loss / d y]) through facs' net and its loss_weight."""
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.float32, requires_grad=grad_y)
    loss = net.loss(net(x=xt, y=yt))
    loss.backward()
    out = [float(loss.detach()), xt.grad.numpy()]
    if grad_y:
        out.append(yt.grad.numpy())
    return out


# ----------------------------------------------------------------------------- SoftmaxWithLoss


def caffe_softmax_loss(x, label, axis, ignore, mode, weight):
    """softmax_loss_layer.cpp: Forward_cpu and Backward_cpu, in float32 as Caffe computes."""
    x = np.moveaxis(x.astype(np.float32), axis, -1)  # (..., C)
    e = np.exp(x - x.max(-1, keepdims=True))
    prob = e / e.sum(-1, keepdims=True)
    lab = label.reshape(x.shape[:-1]).astype(np.int64)
    valid = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    safe = np.where(valid, lab, 0)
    picked = np.take_along_axis(prob, safe[..., None], -1)[..., 0]
    loss = -np.log(np.maximum(picked, FLT_MIN), dtype=np.float64)[valid].sum()
    outer = int(np.prod(x.shape[:axis])) if axis else 1
    inner = int(np.prod(x.shape[axis:-1]))
    count = int(valid.sum()) if ignore is not None else outer * inner
    norm = {"FULL": outer * inner, "VALID": count, "BATCH_SIZE": outer, "NONE": 1}[mode]
    norm = max(1.0, norm)
    diff = prob.astype(np.float64).copy()
    np.put_along_axis(diff, safe[..., None], np.take_along_axis(diff, safe[..., None], -1) - 1, -1)
    diff[~valid] = 0
    return weight * loss / norm, np.moveaxis(diff * weight / norm, -1, axis)


SOFTMAX_CASES = {
    # name: (scores, labels, loss_param text, loss_weight)
    "ordinary": (np.random.default_rng(0).normal(0, 2, (4, 3)), [0, 2, 1, 1], "", 1.0),
    # The one-vs-all case of the issue: a two-class net whose sample is saturated (p < FLT_MIN).
    "saturated two-class": (
        np.array([[60.0, -60.0], [1.0, -1.0], [-80.0, 90.0]]),
        [1, 0, 1],
        "",
        1.0,
    ),
    "all saturated": (np.array([[500.0, -500.0], [-300.0, 300.0]]), [1, 0], "", 1.0),
    "ignore_label": (
        np.random.default_rng(1).normal(0, 30, (5, 4)),
        [3, -1, 0, -1, 2],
        "loss_param { ignore_label: -1 }",
        1.0,
    ),
    "BATCH_SIZE + loss_weight": (
        np.array([[100.0, 0.0, -100.0], [0.0, 0.0, 0.0]]),
        [2, 1],
        "loss_param { normalization: BATCH_SIZE }",
        2.5,
    ),
    "NONE": (np.array([[200.0, -200.0]]), [1], "loss_param { normalization: NONE }", 1.0),
    "legacy normalize: false": (
        np.array([[1.0, 150.0], [3.0, -2.0]]),
        [0, 0],
        "loss_param { normalize: false }",
        1.0,
    ),
}


@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax_with_loss_is_caffes(case):
    x, labels, param, weight = SOFTMAX_CASES[case]
    x = np.asarray(x, np.float32)
    y = np.asarray(labels, np.float32)
    layer = (
        f'layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
        f"loss_weight: {weight} {param} }}"
    )
    loss, grad = run(loss_net(layer, x.shape, y.shape), x, y)
    mode = "VALID"
    for m in ("BATCH_SIZE", "NONE", "FULL"):
        mode = m if m in param else mode
    mode = "BATCH_SIZE" if "normalize: false" in param else mode
    ignore = -1 if "ignore_label" in param else None
    want_loss, want_grad = caffe_softmax_loss(x, y, 1, ignore, mode, weight)
    assert loss == pytest.approx(want_loss, rel=1e-6, abs=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


def test_a_saturated_sample_keeps_its_gradient():
    """The issue's failure: facs clamped the loss and zeroed the saturated sample's gradient
    ([0, 0]); Caffe's is prob - onehot = [+1, -1] / N."""
    x = np.array([[60.0, -60.0]], np.float32)
    layer = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" }'
    loss, grad = run(loss_net(layer, (1, 2), (1,)), x, np.array([1.0], np.float32))
    assert loss == pytest.approx(-np.log(FLT_MIN), rel=1e-6)  # 87.34, clamped
    np.testing.assert_allclose(grad, [[1.0, -1.0]], atol=1e-6)


def test_softmax_with_loss_over_spatial_positions():
    """axis 1 of (N, C, H, W): one label per position, normalised by the valid positions."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 50, (2, 3, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, (2, 1, 2, 2)).astype(np.float32)
    y[0, 0, 0, 0] = 255
    layer = (
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
        "loss_param { ignore_label: 255 } }"
    )
    loss, grad = run(loss_net(layer, x.shape, y.shape), x, y)
    want_loss, want_grad = caffe_softmax_loss(x, y, 1, 255, "VALID", 1.0)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- sigmoid CE


def caffe_sigmoid_ce(x, t, ignore, mode, weight):
    """sigmoid_cross_entropy_loss_layer.cpp (the 2017+ version with normalization)."""
    x = x.astype(np.float64)
    t = t.reshape(x.shape).astype(np.float64)
    valid = np.ones(x.shape, bool) if ignore is None else t != ignore
    pos = (x >= 0).astype(np.float64)
    per = -(x * (t - pos) - np.log1p(np.exp(x - 2 * x * pos)))
    loss = per[valid].sum()
    outer, inner = x.shape[0], int(np.prod(x.shape[1:]))
    count = int(valid.sum()) if ignore is not None else outer * inner
    norm = {"FULL": outer * inner, "VALID": count, "BATCH_SIZE": outer, "NONE": 1}[mode]
    norm = max(1.0, norm)
    sig = 1.0 / (1.0 + np.exp(-x))
    diff = np.where(valid, sig - t, 0.0)
    return weight * loss / norm, diff * weight / norm


SIGMOID_CASES = {
    "ordinary": (np.random.default_rng(3).normal(0, 2, (4, 5)), "", 1.0, None),
    "saturated": (np.array([[200.0, -200.0, 90.0], [-120.0, 0.0, 1e4]]), "", 1.0, None),
    "VALID + ignore_label": (
        np.random.default_rng(4).normal(0, 40, (3, 4)),
        "loss_param { ignore_label: -1 normalization: VALID }",
        1.0,
        -1,
    ),
    "FULL + loss_weight": (
        np.random.default_rng(5).normal(0, 100, (2, 6)),
        "loss_param { normalization: FULL }",
        0.5,
        None,
    ),
}


@pytest.mark.parametrize("case", list(SIGMOID_CASES))
def test_sigmoid_cross_entropy_is_caffes(case):
    x, param, weight, ignore = SIGMOID_CASES[case]
    x = np.asarray(x, np.float32)
    t = (np.random.default_rng(6).random(x.shape) < 0.5).astype(np.float32)
    if ignore is not None:
        t[0, 1] = t[2, 3] = ignore
    layer = (
        f'layer {{ name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "y" '
        f'top: "loss" loss_weight: {weight} {param} }}'
    )
    loss, grad = run(loss_net(layer, x.shape, t.shape), x, t)
    mode = next((m for m in ("VALID", "FULL", "NONE") if m in param), "BATCH_SIZE")
    want_loss, want_grad = caffe_sigmoid_ce(x, t, ignore, mode, weight)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- Euclidean


@pytest.mark.parametrize("weight", [1.0, 3.0])
def test_euclidean_loss_is_caffes(weight):
    """euclidean_loss_layer.cpp: sum(d^2) / N / 2; both bottoms get +-d / N (x loss_weight)."""
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1e3, (3, 4)).astype(np.float32)
    b = rng.normal(0, 1, (3, 4)).astype(np.float32)
    layer = (
        'layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y" top: "loss" '
        f"loss_weight: {weight} }}"
    )
    loss, ga, gb = run(loss_net(layer, a.shape, b.shape), a, b, grad_y=True)
    d = a.astype(np.float64) - b
    assert loss == pytest.approx(weight * (d * d).sum() / 3 / 2, rel=1e-6)
    np.testing.assert_allclose(ga, weight * d / 3, rtol=1e-5)
    np.testing.assert_allclose(gb, -weight * d / 3, rtol=1e-5)


# ----------------------------------------------------------------------------- LRN


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_forward_and_backward(size):
    """facs' LRN (facs.caffe.lrn: Caffe's closed-form backward) against PyTorch's
    local_response_norm and autograd, in float64, on inputs of +-128 where LRN really divides;
    and gradcheck's finite differences."""
    from facs.caffe.lrn import cross_channel_lrn

    torch.manual_seed(size)
    x = (torch.rand(2, 7, 5, 4, dtype=torch.float64) * 256 - 128).requires_grad_()
    args = (size, 1e-4, 0.75, 1.0)
    y = cross_channel_lrn(x, *args)
    ref_x = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.local_response_norm(ref_x, *args)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, g)
    (want,) = torch.autograd.grad(ref, ref_x, g)
    torch.testing.assert_close(dx, want, rtol=1e-10, atol=1e-12)
    small = (torch.rand(1, 6, 3, 3, dtype=torch.float64) * 20 - 10).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cross_channel_lrn(t, size, 0.01, 0.75, 2.0), small)


def test_compiled_lrn_kernels_give_the_eager_numbers():
    """The training kernels (torch.compile; eager where compiling is impossible) against the
    eager functions, forward and backward, in both memory layouts the nets use."""
    from facs.caffe import lrn

    torch.manual_seed(0)
    x = torch.rand(4, 16, 9, 7) * 256 - 128
    g = torch.randn_like(x)
    want_y = lrn.cross_channel_lrn(x, 5, 1e-4, 0.75, 1.0)
    xr = x.clone().requires_grad_()
    (want_dx,) = torch.autograd.grad(lrn.cross_channel_lrn(xr, 5, 1e-4, 0.75, 1.0), xr, g)
    lrn.compile_kernels()
    try:
        for layout in (torch.contiguous_format, torch.channels_last):
            xc = x.contiguous(memory_format=layout).requires_grad_()
            y = lrn.cross_channel_lrn(xc, 5, 1e-4, 0.75, 1.0)
            (dx,) = torch.autograd.grad(y, xc, g)
            torch.testing.assert_close(y, want_y, rtol=2e-6, atol=1e-6)
            torch.testing.assert_close(dx, want_dx, rtol=2e-5, atol=1e-6)
    finally:
        lrn.compile_kernels(False)
