"""Training images/s per stream and evaluation frames/s on CPU, for the quick (or paper) nets.

    python bench/train.py [--profile quick] [--iters 20] [--threads 2]

Each stream's train_val prototxt is built by the engine for the TRAIN phase with its Data
layers swapped for Input layers of the same shape (random uint8-range data, random labels), so
the numbers measure the net and Caffe's SGD update, not LMDB reading; the deploy net is timed
on batches of 256 in the TEST phase. Printed side by side, with the ratio evaluation/training.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STREAMS = {
    # stream: (template stem, input channels, outputs)
    "spatial (best: 6 ch)": ("alexnet_finetune", 6, 16),
    "spatial (faithful: 3 ch)": ("alexnet_finetune", 3, 16),
    "one-vs-all (frozen convs)": ("onevsall", 6, 2),
    "flow (20 ch)": ("flownet", 20, 16),
}


def train_net(template: Path, channels: int, outputs: int, batch: int):
    """The TRAIN-phase net with Input layers in place of its Data layers."""
    from facs.caffe import caffe_pb2
    from facs.caffe.io import read_net_prototxt
    from facs.caffe.net import Net
    from facs.training.render import last_inner_product, set_label_column

    param = read_net_prototxt(template)
    crop = 64
    for layer in param.layer:
        if layer.type == "Data" and any(r.phase == caffe_pb2.TEST for r in layer.include):
            continue
        if layer.type == "Data":
            crop = layer.transform_param.crop_size or crop
            is_label = "label" in layer.top[0]
            dims = (
                [batch, outputs if not is_label else 16, 1, 1]
                if is_label
                else [batch, channels, crop, crop]
            )
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            layer.input_param.shape.add().dim.extend(dims)
    if outputs == 2:
        set_label_column(param, 0, 16)
    else:
        last_inner_product(param).inner_product_param.num_output = outputs
    return Net(param, "TRAIN"), crop


def bench_train(template: Path, channels: int, outputs: int, iters: int, batch: int) -> float:
    from facs.caffe.sgd import sgd_step

    net, crop = train_net(template, channels, outputs, batch)
    blobs = [b for b in net.learnable if b.lr_mult != 0]
    frozen = [b for b in net.learnable if b.lr_mult == 0]
    for b in frozen:
        b.param.requires_grad_(False)
    hist = [torch.zeros_like(b.param) for b in blobs]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 1, (batch, channels, crop, crop)).astype(np.float32))
    y = torch.from_numpy((rng.random((batch, 16, 1, 1)) < 0.1).astype(np.float32))
    t0 = 0.0
    for i in range(iters + 3):  # 3 warm-up iterations
        if i == 3:
            t0 = time.perf_counter()
        out = net.forward(data=x, label=y)
        for b in blobs:
            b.param.grad = None
        net.loss(out).backward()
        with torch.no_grad():
            for b, h in zip(blobs, hist, strict=True):
                sgd_step(
                    b.param.data,
                    b.param.grad,
                    h,
                    local_lr=0.01 * b.lr_mult,
                    momentum=0.9,
                    local_decay=5e-4 * b.decay_mult,
                    regularization="L2",
                    nesterov=False,
                )
    return iters * batch / (time.perf_counter() - t0)


def bench_eval(deploy: Path, channels: int, outputs: int, iters: int, batch: int = 256) -> float:
    from facs.caffe.net import Net
    from facs.training.render import render_deploy

    net = Net(render_deploy(deploy, channels, 64, outputs), "TEST")
    x = torch.randn(batch, channels, 64, 64)
    with torch.no_grad():
        net.forward(data=x)
        t0 = time.perf_counter()
        for _ in range(iters):
            net.forward(data=x)
    return iters * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", help="prototxt/<profile>/ nets")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = ROOT / "prototxt" / args.profile
    load = os.getloadavg()[0]
    print(
        f"bench/train.py: prototxt/{args.profile}, {args.threads} torch threads, batch "
        f"{args.batch} (train) / 256 (eval), load average {load:.1f} at start"
    )
    print(f"{'stream':28s} {'train img/s':>12s} {'eval frames/s':>14s} {'eval/train':>11s}")
    for name, (stem, ch, n_out) in STREAMS.items():
        tr = bench_train(folder / f"{stem}_train_val.prototxt", ch, n_out, args.iters, args.batch)
        ev = bench_eval(folder / f"{stem}_deploy.prototxt", ch, n_out, max(args.iters // 4, 3))
        print(f"{name:28s} {tr:12.0f} {ev:14.0f} {ev / tr:10.1f}x", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes slow these down)")


if __name__ == "__main__":
    main()
