"""Seconds per training iteration: prototxt-built AlexNet (facs) vs hand-written PyTorch
(vs pycaffe where `import caffe` works), measured side by side in one run.

    python bench/engine.py                      # batch 32, CPU, AN-Finetune and all-trainable
    python bench/engine.py --batch 8 --iters 3 --modes finetune

The facs side is prototxt/paper/alexnet_finetune_train_val.prototxt with its Data layers
turned into Input layers (a synthetic in-memory batch), a Caffe SGD update (sgd.sgd_step, the
solver's update) on the blobs with lr_mult > 0. The PyTorch side is the same AlexNet written by
hand (nn.Conv2d, LRN, ceil-mode pooling, dropout 0.9) with torch.optim.SGD on the same blobs.
Iterations alternate between the engines so background load hits both alike; medians are
printed. "finetune" keeps the prototxt's lr_mult 0 on conv1-fc6 (the paper's AN-Finetune);
"full" trains every blob (full backward pass).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facs.caffe import caffe_pb2, sgd  # noqa: E402
from facs.caffe.io import read_net_prototxt, write_prototxt  # noqa: E402
from facs.caffe.net import Net, layer_included  # noqa: E402

PROTOTXT = ROOT / "prototxt/paper/alexnet_finetune_train_val.prototxt"


def input_net(path: Path, batch: int, full: bool) -> tuple[caffe_pb2.NetParameter, int, int]:
    """The TRAIN net with Input layers in place of its Data layers; (param, crop, labels)."""
    src = read_net_prototxt(path)
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
    loss = next(lp for lp in src.layer if lp.type == "SigmoidCrossEntropyLoss")
    n_labels = next(
        lp.inner_product_param.num_output for lp in src.layer if loss.bottom[0] in lp.top
    )
    out = caffe_pb2.NetParameter(name=src.name)
    crop = 227
    for lp in src.layer:
        if not layer_included(lp, state):
            continue
        new = out.layer.add()
        new.CopyFrom(lp)
        new.ClearField("include")
        if lp.type == "Data":
            new.type = "Input"
            new.ClearField("data_param")
            new.ClearField("transform_param")
            if lp.top[0] == "data":
                crop = lp.transform_param.crop_size or crop
                new.input_param.shape.add().dim.extend([batch, 3, crop, crop])
            else:
                new.input_param.shape.add().dim.extend([batch, n_labels])
        if full:
            for p in new.param:
                if p.lr_mult == 0:
                    p.lr_mult, p.decay_mult = 1.0, 1.0
    return out, crop, n_labels


class HandAlexNet(nn.Module):
    """AN-Finetune written by hand: BVLC AlexNet conv1-fc6, fc7 512, fc8 `labels`."""

    def __init__(self, labels: int, dropout: float = 0.9):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 512)
        self.fc8 = nn.Linear(512, labels)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.p = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.lrn(F.relu(self.conv1(x))), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.lrn(F.relu(self.conv2(x))), 3, 2, ceil_mode=True)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2, ceil_mode=True)
        x = F.dropout(F.relu(self.fc6(x.flatten(1))), self.p, self.training)
        x = F.dropout(F.relu(self.fc7(x)), self.p, self.training)
        return self.fc8(x)


def facs_side(param, crop, labels, batch, device):
    net = Net(param, "TRAIN").to(device)
    blobs = [b for b in net.learnable if b.lr_mult != 0]
    for b in net.learnable:
        b.param.requires_grad_(b.lr_mult != 0)
    hist = [torch.zeros_like(b.param) for b in blobs]
    x = torch.rand(batch, 3, crop, crop, device=device) * 255 - 128
    y = (torch.rand(batch, labels, device=device) < 0.2).float()

    def step():
        for b in blobs:
            b.param.grad = None
        loss = net.loss(net(data=x, label=y))
        loss.backward()
        for b, h in zip(blobs, hist, strict=True):
            sgd.sgd_step(b.param.data, b.param.grad, h, 1e-4 * b.lr_mult, 0.9, 5e-4 * b.decay_mult)
        return float(loss.detach())

    return step


def torch_side(labels, batch, crop, device, full):
    model = HandAlexNet(labels).to(device).train()
    for name, p in model.named_parameters():
        p.requires_grad_(full or name.startswith(("fc7", "fc8")))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                          momentum=0.9, weight_decay=5e-4)  # fmt: skip
    x = torch.rand(batch, 3, crop, crop, device=device) * 255 - 128
    y = (torch.rand(batch, labels, device=device) < 0.2).float()

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.binary_cross_entropy_with_logits(out, y, reduction="sum") / batch
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


PYCAFFE = """
import json, sys, time
import numpy as np
import caffe
caffe.set_mode_cpu()
solver = caffe.SGDSolver(sys.argv[1])
net = solver.net
net.blobs["data"].data[...] = np.random.rand(*net.blobs["data"].data.shape) * 255 - 128
net.blobs["label"].data[...] = np.random.rand(*net.blobs["label"].data.shape) < 0.2
times = []
for i in range(int(sys.argv[2]) + 1):
    t = time.perf_counter()
    solver.step(1)
    times.append(time.perf_counter() - t)
print(json.dumps(times[1:]))
"""


def pycaffe_side(param, iters: int) -> list[float] | None:
    """Seconds per iteration of real Caffe in a subprocess (its caffe_pb2 and facs' share a
    protobuf package name, so they never load into one process); None without pycaffe."""
    probe = subprocess.run([sys.executable, "-c", "import caffe"], capture_output=True)
    if probe.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_prototxt(tmp / "net.prototxt", param)
        (tmp / "solver.prototxt").write_text(
            'net: "net.prototxt"\nbase_lr: 0.0001\nlr_policy: "fixed"\nmomentum: 0.9\n'
            "weight_decay: 0.0005\nmax_iter: 100000\ndisplay: 0\nsolver_mode: CPU\n"
        )
        (tmp / "run.py").write_text(PYCAFFE)
        env = dict(os.environ, GLOG_minloglevel="2")
        res = subprocess.run([sys.executable, "run.py", "solver.prototxt", str(iters)], cwd=tmp,
                             capture_output=True, text=True, env=env)  # fmt: skip
        if res.returncode != 0:
            print(f"pycaffe failed: {res.stderr[-500:]}")
            return None
        return json.loads(res.stdout.strip().splitlines()[-1])


def measure(steps: dict, warmup: int, iters: int) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(iters):
        for name, step in steps.items():  # alternate, so background load hits both alike
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="finetune,full")
    ap.add_argument("--prototxt", type=Path, default=PROTOTXT)
    args = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"bench/engine.py: {args.prototxt.name}, batch {args.batch}, {args.iters} iterations "
          f"(+{args.warmup} warm-up), device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    rows = []
    for mode in args.modes.split(","):
        full = mode == "full"
        param, crop, labels = input_net(args.prototxt, args.batch, full)
        steps = {
            "facs": facs_side(param, crop, labels, args.batch, device),
            "torch": torch_side(labels, args.batch, crop, device, full),
        }
        times = measure(steps, args.warmup, args.iters)
        caffe_times = pycaffe_side(param, args.iters) if device.type == "cpu" else None
        med = {k: statistics.median(v) for k, v in times.items()}
        line = (f"{mode:9s} facs {med['facs']:.3f} s/iter   hand-written torch "
                f"{med['torch']:.3f} s/iter   ratio facs/torch {med['facs'] / med['torch']:.3f}"
                " (target <= 1.05)")  # fmt: skip
        if caffe_times:
            c = statistics.median(caffe_times)
            line += f"   pycaffe {c:.3f} s/iter   ratio facs/caffe {med['facs'] / c:.3f}"
        else:
            line += "   pycaffe: not installed (scripts/install_caffe.sh)"
        print(line, flush=True)
        rows.append((mode, med, np.round(times["facs"], 3).tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
