"""Forward equivalence with an independent Caffe implementation: OpenCV's dnn importer.

Random weights are written to a .caffemodel by facs, read back by cv2.dnn.readNetFromCaffe
from the same prototxt, and both engines run the same input. The tolerance is relative to
the largest magnitude of the reference blob.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facs.caffe.net import Net

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4

# Every layer type the equivalence covers beyond the AlexNet-style nets. k stays 1 in the
# ACROSS_CHANNELS LRN: OpenCV's importer ignores lrn_param.k (test_net.py checks k against
# Caffe's formula).
ZOO = """name: "zoo"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 4 dim: 13 dim: 11 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "conv_a"
  convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1
    pad_h: 1 pad_w: 2 group: 2 weight_filler { type: "gaussian" std: 0.3 }
    bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "conv_d" type: "Convolution" bottom: "data" top: "conv_d"
  convolution_param { num_output: 4 kernel_size: 3 dilation: 2 pad: 2 bias_term: false
    weight_filler { type: "xavier" } } }
layer { name: "relu_a" type: "ReLU" bottom: "conv_a" top: "conv_a"
  relu_param { negative_slope: 0.1 } }
layer { name: "lrn_w" type: "LRN" bottom: "conv_a" top: "lrn_w"
  lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "lrn_x" type: "LRN" bottom: "conv_a" top: "lrn_x"
  lrn_param { local_size: 5 alpha: 0.3 beta: 0.6 } }
layer { name: "pool_ave" type: "Pooling" bottom: "lrn_w" top: "pool_ave"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool_max" type: "Pooling" bottom: "lrn_x" top: "pool_max"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "pool_ave" bottom: "pool_max" top: "cat" }
layer { name: "tanh" type: "TanH" bottom: "cat" top: "t" }
layer { name: "sig" type: "Sigmoid" bottom: "cat" top: "s" }
layer { name: "sum" type: "Eltwise" bottom: "t" bottom: "s" top: "sum"
  eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }
layer { name: "prod" type: "Eltwise" bottom: "t" bottom: "s" top: "prod"
  eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "prod" top: "max"
  eltwise_param { operation: MAX } }
layer { name: "slice" type: "Slice" bottom: "max" top: "sl1" top: "sl2"
  slice_param { axis: 1 slice_point: 5 } }
layer { name: "gpool" type: "Pooling" bottom: "conv_d" top: "gpool"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "sl2" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip"
  inner_product_param { num_output: 7 weight_filler { type: "msra" }
    bias_filler { type: "constant" value: 0.2 } } }
layer { name: "resh" type: "Reshape" bottom: "sl1" top: "resh"
  reshape_param { shape { dim: 0 dim: -1 dim: 1 } } }
layer { name: "soft" type: "Softmax" bottom: "ip" top: "soft" }
layer { name: "ip2" type: "InnerProduct" bottom: "resh" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
"""


def randomize(net: Net, seed: int) -> None:
    """Weights that keep activations O(1) through deep nets (He-scaled), random biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in net.learnable:
            p = b.param
            if p.dim() > 1:
                p.normal_(0.0, math.sqrt(2.0 / p[0].numel()), generator=g)
            else:
                p.uniform_(-0.1, 0.1, generator=g)


def compare(prototxt: Path, tmp_path: Path, blobs: list[tuple[str, str]], batch: int = 2):
    """(our blob, OpenCV layer) pairs; returns the worst relative difference."""
    net = Net.from_prototxt(prototxt)
    randomize(net, seed=len(prototxt.name))
    weights = tmp_path / (prototxt.stem + ".caffemodel")
    net.save_caffemodel(weights)
    shape = list(net.blob_shapes["data"])
    shape[0] = batch
    x = np.random.default_rng(0).normal(0, 50, size=shape).astype(np.float32)
    with torch.no_grad():
        net(data=x)
    cv = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    cv.setInput(x)
    theirs = cv.forward([layer for _, layer in blobs])
    worst = 0.0
    for (ours_name, layer), ref in zip(blobs, theirs, strict=True):
        ours = net.blobs[ours_name].numpy()
        assert ours.shape == ref.shape, (ours_name, ours.shape, ref.shape)
        scale = float(np.abs(ref).max())
        assert scale > 1e-6, f"{layer}: reference output is all zero"
        rel = float(np.abs(ours - ref).max()) / scale
        assert rel <= TOL, f"{prototxt.name} {layer}: relative difference {rel:.2e}"
        worst = max(worst, rel)
    weights.unlink()
    return worst


ALEXNET_BLOBS = [("pool5", "pool5"), ("fc6", "drop6"), ("prob", "prob")]


@pytest.mark.parametrize(
    ("path", "blobs"),
    [
        ("paper/alexnet_finetune_deploy", [*ALEXNET_BLOBS, ("fc8_au", "fc8_au")]),
        ("paper/onevsall_deploy", [*ALEXNET_BLOBS, ("fc8_ova", "fc8_ova")]),
        ("paper/flownet_deploy", [("pool5", "pool5"), ("fc8", "fc8"), ("prob", "prob")]),
        ("quick/alexnet_finetune_deploy", [*ALEXNET_BLOBS, ("fc8_au", "fc8_au")]),
        ("quick/onevsall_deploy", [*ALEXNET_BLOBS, ("fc8_ova", "fc8_ova")]),
        ("quick/flownet_deploy", [("pool5", "pool5"), ("fc8", "fc8"), ("prob", "prob")]),
    ],
)
def test_deploy_nets_match_opencv(tmp_path, path, blobs):
    compare(ROOT / "prototxt" / f"{path}.prototxt", tmp_path, blobs)


def test_layer_zoo_matches_opencv(tmp_path):
    proto = tmp_path / "zoo.prototxt"
    proto.write_text(ZOO)
    pairs = [
        ("conv_a", "relu_a"),
        ("conv_d", "conv_d"),
        ("lrn_w", "lrn_w"),
        ("lrn_x", "lrn_x"),
        ("pool_ave", "pool_ave"),
        ("pool_max", "pool_max"),
        ("cat", "cat"),
        ("t", "tanh"),
        ("s", "sig"),
        ("sum", "sum"),
        ("prod", "prod"),
        ("max", "max"),
        ("gpool", "gpool"),
        ("ip", "ip"),
        ("soft", "soft"),
        ("resh", "resh"),
        ("ip2", "ip2"),
    ]
    compare(proto, tmp_path, pairs)
