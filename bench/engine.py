"""Seconds per training iteration: prototxt-built AlexNet (facs) vs hand-written PyTorch
(vs pycaffe where `import caffe` works), measured side by side in one run.

    python bench/engine.py                      # batch 32, CPU, AN-Finetune and all-trainable
    python bench/engine.py --batch 8 --iters 3 --modes finetune

The facs side is prototxt/paper/alexnet_finetune_train_val.prototxt with its Data layers
turned into Input layers (a synthetic in-memory batch), a Caffe SGD update (sgd.sgd_step, the
solver's update) on the blobs with lr_mult > 0. The PyTorch side is the same AlexNet written by
hand (nn.Conv2d, LRN, ceil-mode pooling, dropout 0.9) with torch.optim.SGD on the same blobs.
Iterations alternate between the engines (pycaffe too, stepped in a subprocess) so background
load hits all alike; medians are printed. "finetune" keeps the prototxt's lr_mult 0 on
conv1-fc6 (the paper's AN-Finetune); "full" trains every blob (full backward pass).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facs.caffe import caffe_pb2, lrn, sgd  # noqa: E402
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
    if device.type == "cpu":
        lrn.compile_kernels()  # as facs.caffe.solver.Solver does for training
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
import sys
import numpy as np
import caffe
caffe.set_mode_cpu()
solver = caffe.SGDSolver(sys.argv[1])
net = solver.net
net.blobs["data"].data[...] = np.random.rand(*net.blobs["data"].data.shape) * 255 - 128
net.blobs["label"].data[...] = np.random.rand(*net.blobs["label"].data.shape) < 0.2
print("ready", flush=True)
for line in sys.stdin:  # one training iteration per request line
    solver.step(1)
    print("done", flush=True)
"""


class PyCaffe:
    """Real Caffe in a subprocess, stepped one iteration per request so its iterations
    interleave with the others (its caffe_pb2 and facs' declare the same protobuf package, so
    they never load into one process)."""

    def __init__(self, param: caffe_pb2.NetParameter):
        self.tmp = tempfile.TemporaryDirectory()
        tmp = Path(self.tmp.name)
        write_prototxt(tmp / "net.prototxt", param)
        (tmp / "solver.prototxt").write_text(
            'net: "net.prototxt"\nbase_lr: 0.0001\nlr_policy: "fixed"\nmomentum: 0.9\n'
            "weight_decay: 0.0005\nmax_iter: 100000000\ndisplay: 0\nsolver_mode: CPU\n"
        )
        (tmp / "run.py").write_text(PYCAFFE)
        env = dict(os.environ, GLOG_minloglevel="2")
        self.proc = subprocess.Popen([sys.executable, "run.py", "solver.prototxt"], cwd=tmp,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("pycaffe did not start")

    def __call__(self) -> None:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "done":
            raise RuntimeError("pycaffe step failed")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.tmp.cleanup()


def have_pycaffe() -> bool:
    return (
        subprocess.run([sys.executable, "-c", "import caffe"], capture_output=True).returncode == 0
    )


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
          f"{torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    for mode in args.modes.split(","):
        full = mode == "full"
        param, crop, labels = input_net(args.prototxt, args.batch, full)
        steps = {
            "facs": facs_side(param, crop, labels, args.batch, device),
            "torch": torch_side(labels, args.batch, crop, device, full),
        }
        caffe = PyCaffe(param) if device.type == "cpu" and have_pycaffe() else None
        if caffe is not None:
            steps["pycaffe"] = caffe
        times = measure(steps, args.warmup, args.iters)
        if caffe is not None:
            caffe.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        line = (f"{mode:9s} facs {med['facs']:.3f} s/iter   hand-written torch "
                f"{med['torch']:.3f} s/iter   ratio facs/torch {med['facs'] / med['torch']:.3f}"
                " (target <= 1.0)")  # fmt: skip
        if caffe is not None:
            c = med["pycaffe"]
            line += (f"   pycaffe {c:.3f} s/iter   ratio facs/caffe {med['facs'] / c:.3f}"
                     " (target <= 0.5)")  # fmt: skip
        else:
            line += "   pycaffe: not installed (scripts/install_caffe.sh)"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
