"""The net builder: Caffe's layer semantics, phases, in-place and split blobs, errors, net-info.

Reference values come from loops written straight from Caffe's C++ (pooling_layer.cpp,
lrn_layer.cpp, the loss layers), independent of the PyTorch code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from facs.caffe import caffe_pb2
from facs.caffe.layers import pooled_size
from facs.caffe.net import Net
from facs.cli import main
from facs.errors import FacsError

ROOT = Path(__file__).resolve().parents[1]


def net_from(text: str, phase: str = "TEST", **kw) -> Net:
    return Net(text_format.Parse(text, caffe_pb2.NetParameter()), phase, **kw)


def input_layer(shape, name="data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    shape = f"input_param {{ shape {{ {dims} }} }}"
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" {shape} }}\n'


# ----------------------------------------------------------------------------- net-info


def test_net_info_prints_alexnet_shapes(capsys):
    assert main(["net-info", str(ROOT / "prototxt/paper/alexnet_finetune_deploy.prototxt")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    want = {
        "conv1": "96x55x55",
        "pool1": "96x27x27",
        "conv2": "256x27x27",
        "pool2": "256x13x13",
        "conv3": "384x13x13",
        "conv4": "384x13x13",
        "conv5": "256x13x13",
        "pool5": "256x6x6",
        "fc6": "4096",
        "fc7_au": "512",
        "fc8_au": "37",
    }
    for layer, shape in want.items():
        assert rows[layer][3] == shape, rows[layer]
    assert rows["conv1"][4] == "34,944" and rows["conv1"][5] == "0/0"  # frozen
    assert rows["fc7_au"][5] == "1/2"
    assert "40,086,912 with lr_mult 0" in out


def test_net_info_train_val_with_shapes_and_errors(capsys, tmp_path):
    tv = str(ROOT / "prototxt/quick/onevsall_train_val.prototxt")
    args = ["net-info", tv, "--phase", "TRAIN", "--shape", "data=8,6,64,64"]
    assert main([*args, "--shape", "label=8,37,1,1"]) == 0
    out = capsys.readouterr().out
    assert "6x64x64" in out and "loss x 1" in out and "accuracy" not in out  # TEST-only
    # Without LMDBs and without --shape: a one-line error naming the layer and its line.
    assert main(["net-info", tv]) == 2
    err = capsys.readouterr().err
    assert "onevsall_train_val.prototxt:" in err and "data_test" in err and "--shape" in err


@pytest.mark.parametrize("net", ["alexnet_finetune", "onevsall", "flownet"])
def test_net_info_reads_the_lmdbs_of_a_work_directory(capsys, small_work, net):
    """The README's command: the templates' WORK/ paths are the layout `facs lmdb` writes."""
    tv = str(ROOT / f"prototxt/quick/{net}_train_val.prototxt")
    assert main(["net-info", tv, "--work", str(small_work)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "x64x64" in out and "loss" in out


# ----------------------------------------------------------------------------- pooling


def caffe_pool(x: np.ndarray, k: int, s: int, p: int, method: str) -> np.ndarray:
    """pooling_layer.cpp, literally."""
    n, c, h, w = x.shape
    ph, pw = pooled_size(h, k, s, p, True), pooled_size(w, k, s, p, True)
    out = np.zeros((n, c, ph, pw), np.float64)
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            size = (he - hs) * (we - ws)
            hs0, ws0, he0, we0 = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs0:he0, ws0:we0]
            if method == "MAX":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                out[:, :, i, j] = win.sum(axis=(2, 3)) / size
    return out


def test_pooled_size_rounds_up_like_caffe():
    assert pooled_size(55, 3, 2, 0, True) == 27  # AlexNet pool1
    assert pooled_size(6, 3, 2, 0, True) == 3  # floor would give 2
    assert pooled_size(5, 2, 2, 1, True) == 3  # last window would start in the pad: 4 -> 3
    assert pooled_size(6, 3, 2, 0, False) == 2


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(
    ("size", "k", "s", "p"),
    [(6, 3, 2, 0), (7, 3, 2, 1), (5, 2, 2, 1), (8, 4, 3, 2), (9, 3, 2, 2), (7, 2, 3, 1)],
)
def test_pooling_matches_caffe_loops(method, size, k, s, p):
    x = np.random.default_rng(size * 10 + k).normal(size=(2, 3, size, size + 1)).astype(np.float32)
    net = net_from(
        input_layer(x.shape) + f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" '
        f"pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }} }}"
    )
    got = net(data=x)["p"].numpy()
    want = caffe_pool(x.astype(np.float64), k, s, p, method)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_global_pooling():
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    net = net_from(
        input_layer(x.shape) + 'layer { name: "g" type: "Pooling" bottom: "data" top: "g" '
        "pooling_param { pool: AVE global_pooling: true } }"
    )
    np.testing.assert_allclose(net(data=x)["g"].numpy()[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-5)


# ----------------------------------------------------------------------------- LRN


def caffe_lrn_across(x, n, alpha, beta, k):
    c = x.shape[1]
    out = np.empty_like(x)
    pre = (n - 1) // 2
    for ch in range(c):
        lo, hi = max(0, ch - pre), min(c, ch - pre + n)
        scale = k + alpha / n * (x[:, lo:hi] ** 2).sum(axis=1)
        out[:, ch] = x[:, ch] * scale**-beta
    return out


def caffe_lrn_within(x, n, alpha, beta):
    pad = (n - 1) // 2
    h, w = x.shape[2:]
    sq = np.pad(x**2, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    avg = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            avg[:, :, i, j] = sq[:, :, i : i + n, j : j + n].sum(axis=(2, 3)) / (n * n)
    return x * (1 + alpha * avg) ** -beta


def test_lrn_across_and_within_channels():
    x = np.random.default_rng(1).normal(size=(2, 7, 5, 6)).astype(np.float64) * 3
    net = net_from(
        input_layer(x.shape) + 'layer { name: "a" type: "LRN" bottom: "data" top: "a" '
        "lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 } }\n"
        'layer { name: "w" type: "LRN" bottom: "data" top: "w" '
        "lrn_param { local_size: 3 alpha: 0.5 beta: 0.6 norm_region: WITHIN_CHANNEL } }"
    )
    out = net(data=x.astype(np.float32))
    np.testing.assert_allclose(out["a"].numpy(), caffe_lrn_across(x, 5, 0.3, 0.75, 2), rtol=1e-5)
    np.testing.assert_allclose(out["w"].numpy(), caffe_lrn_within(x, 3, 0.5, 0.6), rtol=1e-5)
    # AlexNet's LRN (k = 1) is torch's LocalResponseNorm.
    ref = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(torch.tensor(x, dtype=torch.float32))
    net = net_from(
        input_layer(x.shape) + 'layer { name: "n" type: "LRN" bottom: "data" top: "n" '
        "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }"
    )
    torch.testing.assert_close(net(data=ref * 0 + torch.tensor(x).float())["n"], ref)


# ----------------------------------------------------------------------------- convolution


def test_group_convolution_is_two_separate_convolutions():
    x = torch.randn(2, 6, 9, 9)
    net = net_from(
        input_layer(x.shape) + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2 "
        'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "constant" value: 0.5 } } }'
    )
    w, b = net.layer("c").blobs
    assert tuple(w.shape) == (4, 3, 3, 3) and torch.all(b == 0.5)
    halves = [
        torch.nn.functional.conv2d(
            x[:, 3 * g : 3 * g + 3], w[2 * g : 2 * g + 2], b[2 * g : 2 * g + 2], 2, 1
        )
        for g in range(2)
    ]
    torch.testing.assert_close(net(data=x)["c"], torch.cat(halves, 1))
    assert net.blob_shapes["c"] == (2, 4, 5, 5)


def test_fillers_follow_caffe_fan_rules():
    torch.manual_seed(0)
    text = input_layer((1, 50, 4, 4)) + "".join(
        f'layer {{ name: "{n}" type: "Convolution" bottom: "data" top: "{n}" '
        f"convolution_param {{ num_output: 200 kernel_size: 3 {f} }} }}\n"
        for n, f in [
            ("xavier", 'weight_filler { type: "xavier" }'),
            ("msra", 'weight_filler { type: "msra" variance_norm: FAN_OUT }'),
            ("default", ""),
            ("uniform", 'weight_filler { type: "uniform" min: 2 max: 3 }'),
        ]
    )
    net = net_from(text)
    fan_in, fan_out = 50 * 9, 200 * 9
    w = net.layer("xavier").blobs[0]
    assert w.abs().max() <= math.sqrt(3 / fan_in) and w.abs().max() > 0.9 * math.sqrt(3 / fan_in)
    assert float(net.layer("msra").blobs[0].detach().std()) == pytest.approx(
        math.sqrt(2 / fan_out), rel=0.05
    )
    assert torch.all(net.layer("default").blobs[0] == 0)  # Caffe's default filler: constant 0
    u = net.layer("uniform").blobs[0].detach()
    assert 2 <= float(u.min()) and float(u.max()) <= 3


# ----------------------------------------------------------------------------- graph semantics


def test_in_place_and_automatic_split():
    net = net_from(
        input_layer((1, 4))
        + 'layer { name: "before" type: "Power" bottom: "data" top: "before" }\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }\n'
        'layer { name: "after" type: "Power" bottom: "data" top: "after" }\n'
        'layer { name: "twice" type: "Eltwise" bottom: "after" bottom: "after" top: "twice" }'
    )
    x = torch.tensor([[-1.0, 2.0, -3.0, 4.0]], requires_grad=True)
    out = net(data=x)
    assert out["before"].tolist() == [[-1, 2, -3, 4]]  # read before the in-place ReLU
    assert net.blobs["after"].tolist() == [[0, 2, 0, 4]]
    assert set(out) == {"before", "twice"} and x.tolist() == [[-1, 2, -3, 4]]
    out["twice"].sum().backward()  # the split blob's gradients add up, as Caffe's Split does
    assert x.grad.tolist() == [[0, 2, 0, 2]]


NET_RULES = (
    input_layer((2, 3))
    + 'layer { name: "t" type: "Power" bottom: "data" top: "y" include { phase: TRAIN } '
    "power_param { scale: 2 } }\n"
    'layer { name: "v" type: "Power" bottom: "data" top: "y" include { phase: TEST } '
    "power_param { scale: 3 } }\n"
    'layer { name: "s" type: "Power" bottom: "y" top: "z" include { stage: "deep" } }\n'
    'layer { name: "x" type: "Power" bottom: "y" top: "w" exclude { phase: TEST min_level: 1 } }\n'
)


def test_include_exclude_rules():
    x = torch.ones(2, 3)
    train = net_from(NET_RULES, "TRAIN")
    assert train.layer_names == ["data", "t", "x"] and float(train(data=x)["w"][0, 0]) == 2
    test = net_from(NET_RULES, "TEST", stages=["deep"])
    assert test.layer_names == ["data", "v", "s", "x"] and float(test(data=x)["z"][0, 0]) == 3
    assert net_from(NET_RULES, "TEST", level=1).layer_names == ["data", "v"]


def test_dropout_scales_at_train_time_only():
    text = input_layer((200, 500)) + (
        'layer { name: "d" type: "Dropout" bottom: "data" top: "data" '
        "dropout_param { dropout_ratio: 0.9 } }"
    )
    x = torch.ones(200, 500)
    torch.manual_seed(0)
    y = net_from(text, "TRAIN")(data=x)["data"]
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 10.0))
    assert float((y == 0).float().mean()) == pytest.approx(0.9, abs=0.01)
    assert torch.equal(net_from(text, "TEST")(data=x)["data"], x)


def test_concat_slice_eltwise_flatten_reshape_softmax():
    x = torch.randn(2, 6, 3, 2)
    net = net_from(
        input_layer(x.shape)
        + 'layer { name: "sl" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" '
        "slice_param { axis: 1 slice_point: 1 slice_point: 4 } }\n"
        'layer { name: "cat" type: "Concat" bottom: "c" bottom: "a" top: "cat" }\n'
        'layer { name: "sum" type: "Eltwise" bottom: "b" bottom: "b" top: "sum" '
        "eltwise_param { coeff: 1 coeff: -3 } }\n"
        'layer { name: "prod" type: "Eltwise" bottom: "cat" bottom: "cat" top: "prod" '
        "eltwise_param { operation: PROD } }\n"
        'layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "b" top: "max" '
        "eltwise_param { operation: MAX } }\n"
        'layer { name: "fl" type: "Flatten" bottom: "max" top: "fl" }\n'
        'layer { name: "rs" type: "Reshape" bottom: "prod" top: "rs" '
        "reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }\n"
        'layer { name: "sm" type: "Softmax" bottom: "fl" top: "sm" }'
    )
    out = net(data=x)
    a, b, c = x[:, :1], x[:, 1:4], x[:, 4:]
    torch.testing.assert_close(out["rs"], (torch.cat([c, a], 1) ** 2).reshape(2, 9, 2))
    torch.testing.assert_close(out["sm"], torch.softmax(torch.maximum(-2 * b, b).reshape(2, -1), 1))
    assert net.blob_shapes["rs"] == (2, 9, 2) and net.blob_shapes["fl"] == (2, 18)


# ----------------------------------------------------------------------------- losses


def test_softmax_with_loss_ignore_label_and_normalization():
    scores = torch.randn(4, 3, 2)  # softmax over axis 1 at 2 spatial positions
    labels = torch.tensor([[0, 2], [1, 255], [2, 0], [255, 1]], dtype=torch.float32)
    logp = torch.log_softmax(scores, 1)
    picked = [
        (-logp[n, int(labels[n, i]), i]) for n in range(4) for i in range(2) if labels[n, i] != 255
    ]
    total = float(sum(picked))
    for mode, norm in [("VALID", 6), ("FULL", 8), ("BATCH_SIZE", 4), ("NONE", 1)]:
        net = net_from(
            input_layer((4, 3, 2), "s")
            + input_layer((4, 2), "l")
            + f'layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss" '
            f"loss_param {{ ignore_label: 255 normalization: {mode} }} }}"
        )
        out = net(s=scores, l=labels)
        assert float(out["loss"]) == pytest.approx(total / norm, rel=1e-5), mode
        assert float(net.loss(out)) == pytest.approx(total / norm, rel=1e-5)


def test_sigmoid_cross_entropy_and_euclidean_and_loss_weight():
    x = torch.tensor([[2.0, -1.0, 0.5], [-30.0, 40.0, 0.0]])
    t = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    net = net_from(
        input_layer((2, 3), "x")
        + input_layer((2, 3, 1, 1), "t")
        + 'layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
        'top: "sce" }\n'
        'layer { name: "l2" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "l2" '
        "loss_weight: 0.5 }"
    )
    out = net(x=x, t=t)
    p = 1 / (1 + np.exp(-x.double().numpy()))
    with np.errstate(divide="ignore"):
        bce = -(t.numpy() * np.log(p) + (1 - t.numpy()) * np.log1p(-p))
    bce[1, 0], bce[1, 1] = 30.0, 40.0  # the stable form's values where p saturates
    assert float(out["sce"]) == pytest.approx(bce.sum() / 2, rel=1e-6)  # sum over labels / batch
    l2 = float(((x - t) ** 2).sum() / 2 / 2)
    assert float(out["l2"]) == pytest.approx(l2, rel=1e-6)
    assert float(net.loss(out)) == pytest.approx(bce.sum() / 2 + 0.5 * l2, rel=1e-6)


def test_accuracy_top_k():
    s = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]])
    lab = torch.tensor([2.0, 0.0, 0.0, 1.0])
    for k, want in [(1, 0.25), (2, 0.75), (3, 1.0)]:
        net = net_from(
            input_layer((4, 3), "s")
            + input_layer((4,), "l")
            + f'layer {{ name: "acc" type: "Accuracy" bottom: "s" bottom: "l" top: "acc" '
            f"accuracy_param {{ top_k: {k} }} }}"
        )
        assert float(net(s=s, l=lab)["acc"]) == pytest.approx(want), k


# ----------------------------------------------------------------------------- params


def test_param_specs_and_sharing():
    net = net_from(
        input_layer((2, 5)) + 'layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" '
        'param { name: "shared_w" lr_mult: 0 decay_mult: 0 } param { lr_mult: 2 decay_mult: 0 } '
        'inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }\n'
        'layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" param { name: "shared_w" } '
        "inner_product_param { num_output: 5 bias_term: false } }"
    )
    specs = [(b.layer, b.index, b.lr_mult, b.decay_mult) for b in net.learnable]
    assert specs == [("a", 0, 0, 0), ("a", 1, 2, 0), ("b", 0, 1, 1)]
    assert net.learnable[0].param is net.learnable[2].param
    assert len(list(net.parameters())) == 2


# ----------------------------------------------------------------------------- errors


def _bad(tmp_path, body: str) -> Path:
    p = tmp_path / "bad.prototxt"
    p.write_text('name: "bad"\n' + input_layer((1, 3, 8, 8)) + body)
    return p


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'layer {\n name: "x"\n type: "Frobnicate"\n bottom: "data"\n top: "x"\n}\n',
            "unsupported layer type",
        ),
        (
            'layer {\n name: "x"\n type: "Convolution"\n bottom: "data"\n top: "x"\n'
            " convolution_param { num_output: 4 kernel_size: 3 group: 2 }\n}\n",
            "group 2 must divide the input channels",
        ),
        (
            'layer {\n name: "x"\n type: "ReLU"\n bottom: "nope"\n top: "x"\n}\n',
            "unknown bottom blob 'nope'",
        ),
        (
            'layer {\n name: "x"\n type: "Pooling"\n bottom: "data"\n top: "x"\n'
            " pooling_param { kernel_size: 20 }\n}\n",
            "larger than the padded input",
        ),
        ('layer {\n name: "x"\n type: "Concat"\n top: "x"\n}\n', "needs at least 1 bottom"),
    ],
)
def test_errors_name_the_layer_and_line(tmp_path, body, message):
    path = _bad(tmp_path, body)
    with pytest.raises(FacsError) as err:
        Net.from_prototxt(path)
    text = str(err.value)
    assert text.startswith(f"{path}:3: layer 'x' (")
    assert message in text


def test_error_line_with_legacy_input_fields(tmp_path):
    path = tmp_path / "old.prototxt"
    path.write_text(
        'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n'
        'layer {\n name: "ok"\n type: "ReLU"\n bottom: "data"\n top: "ok"\n}\n'
        'layer {\n name: "x"\n type: "LRN"\n bottom: "ok"\n top: "x"\n'
        " lrn_param { local_size: 4 }\n}\n"
    )
    with pytest.raises(
        FacsError, match=r"old\.prototxt:12: layer 'x' \(LRN\): local_size must be odd"
    ):
        Net.from_prototxt(path)


def test_missing_input_and_unknown_feed():
    net = net_from(input_layer((1, 2)))
    with pytest.raises(FacsError, match="not given"):
        net()
    with pytest.raises(FacsError, match="no blob named 'zzz'"):
        net(data=torch.zeros(1, 2), zzz=torch.zeros(1))
