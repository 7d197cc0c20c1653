"""Real Caffe (pycaffe, built by scripts/install_caffe.sh) as the oracle of facs' engine, on the
project's own nets:

- forward: the three paper deploy nets and the three quick ones, random weights (He-scaled)
  and inputs of +-128, so that LRN really divides; every blob within 1e-5 of its magnitude;
- training: three SGD steps of each paper and quick train_val net through the real solver
  files' hyper-parameters and Data layers reading LMDBs (AN-Finetune with its frozen layers,
  one-vs-all through its Slice and Silence, the flow net from scratch), and one-vs-all with a
  saturated softmax (samples whose label probability is below FLT_MIN: Caffe still trains
  them); each step starts from Caffe's state after the previous one (its snapshots: weights
  and momentum history); losses and every weight blob within 1e-5 of their magnitude (the
  paper flow net's weights: see FROM_SCRATCH_TOL).

Dropout is the one thing left out of the training nets here: its masks come from each engine's
own random generator (tests/test_net.py checks its TRAIN/TEST semantics). Training reads
records cut to the crop size, so Caffe's random crop offset is 0 in both engines.

pycaffe runs in a subprocess (its caffe_pb2 and facs' declare the same protobuf package). The
numbers go to the end of the pytest report (conftest.py). Where `import caffe` fails the
suite is skipped — except under CI, where that is a failure: CI builds Caffe every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from facs.caffe import caffe_pb2
from facs.caffe.io import (
    blob_to_array,
    read_caffemodel,
    read_net_prototxt,
    read_solver_prototxt,
    write_blobproto,
    write_prototxt,
)
from facs.caffe.lmdb import LmdbWriter, array_to_datum, labels_to_datum
from facs.caffe.net import Net
from facs.caffe.solver import Solver

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5  # of each blob's magnitude (max |value|)
HAVE_CAFFE = (
    subprocess.run([sys.executable, "-c", "import caffe"], capture_output=True).returncode == 0
)
if not HAVE_CAFFE and os.environ.get("CI"):
    pytest.fail("CI: pycaffe does not import; scripts/install_caffe.sh must run first", False)
pytestmark = pytest.mark.skipif(
    not HAVE_CAFFE,
    reason="pycaffe is not installed: scripts/install_caffe.sh builds BVLC Caffe (CPU) from the "
    "PyPI sdist brocolli-caffe (apt -dev packages, about 7 min on 2 cores, once)",
)

CAFFE_SCRIPT = r"""
import json, sys
import numpy as np
import caffe
caffe.set_mode_cpu()
job = json.load(open(sys.argv[1]))
if job["kind"] == "forward":
    net = caffe.Net(job["net"], job["weights"], caffe.TEST)
    net.blobs[job["input"]].data[...] = np.load(job["data"])
    net.forward()
    np.savez(job["out"], **{k: v.data for k, v in net.blobs.items()})
else:
    solver = caffe.SGDSolver(job["solver"])
    solver.net.copy_from(job["weights"])
    losses = []
    for _ in range(job["steps"]):
        solver.step(1)
        losses.append(float(solver.net.blobs[job["loss"]].data))
        solver.snapshot()  # weights and momentum history after each step
    np.savez(job["out"], losses=np.array(losses))
"""


def pycaffe(job: dict, tmp: Path) -> dict[str, np.ndarray]:
    """Run one job in pycaffe; its arrays."""
    job = {**job, "out": str(tmp / "caffe_out.npz")}
    (tmp / "job.json").write_text(json.dumps(job))
    (tmp / "run_caffe.py").write_text(CAFFE_SCRIPT)
    env = dict(os.environ, GLOG_minloglevel="2", OMP_NUM_THREADS=str(torch.get_num_threads()))
    res = subprocess.run([sys.executable, "run_caffe.py", "job.json"], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(job["out"]) as z:
        return {k: z[k] for k in z.files}


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| over max |want| (0 for an all-zero blob matched exactly)."""
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
    return diff / scale if scale > 0 else diff


def he_weights(net: Net, seed: int) -> None:
    """Random weights scaled by fan-in (deploy nets carry no fillers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in net.learnable:
            p = b.param
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            else:
                p.copy_(torch.rand(p.shape, generator=g) * 0.2 - 0.1)


# ----------------------------------------------------------------------------- forward

DEPLOY = [f"{p}/{n}_deploy.prototxt" for p in ("paper", "quick")
          for n in ("alexnet_finetune", "onevsall", "flownet")]  # fmt: skip


@pytest.mark.parametrize("name", DEPLOY)
def test_deploy_nets_forward_as_caffe(name, tmp_path, report):
    param = read_net_prototxt(ROOT / "prototxt" / name)
    inp = next(lp for lp in param.layer if lp.type == "Input")
    inp.input_param.shape[0].dim[0] = 2  # two images: batch handling is part of the check
    write_prototxt(tmp_path / "net.prototxt", param)
    net = Net.from_prototxt(tmp_path / "net.prototxt", "TEST")
    he_weights(net, seed=len(name))
    shape = tuple(inp.input_param.shape[0].dim)
    x = np.random.default_rng(0).uniform(-128, 128, shape).astype(np.float32)
    with torch.no_grad():
        # Output scores of at most 4, so the sigmoid / softmax is not flat: a flat one hides
        # differences, and one fed scores in the hundreds turns rounding into large errors.
        net(**{inp.top[0]: torch.from_numpy(x)})
        last = [lp for lp in net.layer_params if lp.type == "InnerProduct"][-1]
        w, b = net.layer(last.name).blobs
        factor = 4.0 / float(net.blobs[last.top[0]].abs().max())
        w.mul_(factor)
        b.mul_(factor)
    net.save_caffemodel(tmp_path / "w.caffemodel")
    np.save(tmp_path / "x.npy", x)
    ref = pycaffe({"kind": "forward", "net": "net.prototxt", "weights": "w.caffemodel",
                   "input": inp.top[0], "data": "x.npy"}, tmp_path)  # fmt: skip
    with torch.no_grad():
        net(**{inp.top[0]: torch.from_numpy(x)})
    errs = {k: rel_err(net.blobs[k].numpy(), v) for k, v in ref.items()}
    worst = max(errs, key=errs.get)
    lrn = [k for k in errs if k.startswith("norm")]
    report(
        f"forward  {name:38s} {len(errs):2d} blobs  worst {worst} {errs[worst]:.1e}"
        + (f"  LRN {max(errs[k] for k in lrn):.1e}" if lrn else "")
    )
    assert errs[worst] <= TOL, errs


# ----------------------------------------------------------------------------- training


def training_copy(template: Path, folder: Path, records: int, batch: int) -> tuple[Path, str, int]:
    """The train_val net for the oracle: its TRAIN Data layers read LMDBs made here (records of
    the crop size, so the random crop is at 0), Dropout layers out; (net file, loss top,
    labels)."""
    param = read_net_prototxt(template)
    keep = []
    crop = channels = None
    for lp in param.layer:
        train = not lp.include or lp.include[0].phase == caffe_pb2.TRAIN
        if not train or lp.type == "Dropout":
            continue
        if lp.type == "Data" and lp.top[0] == "data":
            crop = lp.transform_param.crop_size
        keep.append(lp)
    # conv1's input channels: the LMDB decides; use the deploy net's.
    deploy = read_net_prototxt(Path(str(template).replace("_train_val", "_deploy")))
    channels = next(lp for lp in deploy.layer if lp.type == "Input").input_param.shape[0].dim[1]
    n_labels = 37
    out = caffe_pb2.NetParameter(name=param.name)
    loss_top = ""
    for lp in keep:
        new = out.layer.add()
        new.CopyFrom(lp)
        new.ClearField("include")
        if lp.type == "Data":
            new.data_param.batch_size = batch
            new.data_param.source = str(folder / ("img" if lp.top[0] == "data" else "lab"))
            if lp.top[0] == "data":
                new.transform_param.mean_file = str(folder / "mean.binaryproto")
                new.transform_param.mirror = False
        if "Loss" in lp.type:
            loss_top = lp.top[0]
    rng = np.random.default_rng(records)
    if "flow" in template.name:
        # Flow stacks as the flow stage encodes them: 128 = no motion, small displacements.
        flow = rng.normal(128, FLOW_STD, (records, channels, crop, crop))
        imgs = np.clip(np.rint(flow), 0, 255).astype(np.uint8)
    else:
        imgs = rng.integers(0, 256, (records, channels, crop, crop), dtype=np.uint8)
    labels = (rng.random((records, n_labels)) < 0.3).astype(np.float32)
    with LmdbWriter(folder / "img", 1 << 30) as w:
        for i, a in enumerate(imgs):
            w.put(f"{i:08d}", array_to_datum(a))
    with LmdbWriter(folder / "lab", 1 << 26) as w:
        for i, y in enumerate(labels):
            w.put(f"{i:08d}", labels_to_datum(y))
    mean = imgs.mean(0, dtype=np.float64).astype(np.float32)[None]  # (1, C, H, W)
    write_blobproto(folder / "mean.binaryproto", mean)
    write_prototxt(folder / "net.prototxt", out)
    return folder / "net.prototxt", loss_top, n_labels


def training_solver(template: Path, folder: Path, steps: int) -> Path:
    """The template solver's hyper-parameters, `steps` iterations, no tests, no snapshots."""
    sp = read_solver_prototxt(template)
    out = caffe_pb2.SolverParameter()
    for f in ("base_lr", "lr_policy", "gamma", "stepsize", "power", "momentum", "weight_decay",
              "regularization_type", "clip_gradients", "iter_size"):  # fmt: skip
        if sp.HasField(f):
            setattr(out, f, getattr(sp, f))
    out.net = "net.prototxt"
    out.max_iter = steps
    out.display = 1
    out.snapshot_after_train = False
    out.solver_mode = caffe_pb2.SolverParameter.CPU
    out.snapshot_prefix = str(folder / "oracle")
    write_prototxt(folder / "solver.prototxt", out)
    return folder / "solver.prototxt"


TRAIN = {
    # case: (profile, net, saturate)
    "paper AN-Finetune": ("paper", "alexnet_finetune", False),
    "paper one-vs-all": ("paper", "onevsall", False),
    "paper one-vs-all, saturated": ("paper", "onevsall", True),
    "paper flow net": ("paper", "flownet", False),  # weights: FROM_SCRATCH_TOL
    "quick AN-Finetune": ("quick", "alexnet_finetune", False),
    "quick one-vs-all, saturated": ("quick", "onevsall", True),
    "quick flow net": ("quick", "flownet", False),
}
STEPS = 3
FLOW_STD = float(os.environ.get("FACS_ORACLE_FLOW_STD", 2))
# The paper flow net trains every conv layer from scratch on 227x227 stacks: about 750,000 ReLU
# inputs per image and step, and one that lies within float32 rounding of 0 passes its gradient
# in one engine and not in the other. Such a switch moves a conv bias (which starts at 0, so
# its magnitude is the update's) by 1e-3 to 1e-2 of its magnitude; checked against facs' nets
# in float64, it showed up in facs on one draw of the data and in Caffe on another, and it moves
# with any change of summation order (channels-last memory, a compiled LRN). The losses, from
# the same starting state each step, still agree to 1e-5, and the weights are held to 5e-2,
# which a wrong gradient (off by O(1)) cannot meet; the numbers are printed either way.
FROM_SCRATCH_TOL = 5e-2


@pytest.mark.parametrize("case", list(TRAIN))
def test_three_sgd_steps_as_caffe(case, tmp_path, report):
    profile, name, saturate = TRAIN[case]
    folder = ROOT / "prototxt" / profile
    batch = 8
    net_file, loss_top, _ = training_copy(
        folder / f"{name}_train_val.prototxt", tmp_path, 20, batch
    )
    solver_file = training_solver(folder / f"{name}_solver.prototxt", tmp_path, STEPS)
    torch.manual_seed(0)
    init = Net.from_prototxt(net_file, "TRAIN")
    if saturate:
        # Scale the 2-way output so that many samples' label probability is below FLT_MIN:
        # Caffe clamps their loss at -log(FLT_MIN) = 87.3 but still trains them.
        with torch.no_grad():
            init()
            last = [lp for lp in init.layer_params if lp.type == "InnerProduct"][-1]
            w, b = init.layer(last.name).blobs
            z = init.blobs[last.bottom[0]].flatten(1) @ w.T + b
            spread = float((z[:, 0] - z[:, 1]).abs().median())
            w.mul_(400.0 / max(spread, 1e-6))
            b.zero_()
    init.save_caffemodel(tmp_path / "init.caffemodel")
    ref = pycaffe({"kind": "train", "solver": "solver.prototxt", "weights": "init.caffemodel",
                   "steps": STEPS, "loss": loss_top}, tmp_path)  # fmt: skip
    # Each facs step starts from Caffe's state after the previous one (weights and momentum
    # history, from its snapshots), so each step is compared on its own: float32 rounding
    # differences are not compounded through an unstable trajectory.
    losses, errs = [], {}
    for k in range(STEPS):
        solver = Solver(solver_file, log=False)
        if k == 0:
            solver.load_weights(tmp_path / "init.caffemodel")
        else:
            solver.restore(tmp_path / f"oracle_iter_{k}.solverstate")
        solver.step(1)
        losses.append(solver.losses[-1])
        model = read_caffemodel(tmp_path / f"oracle_iter_{k + 1}.caffemodel")
        want = {lp.name: [blob_to_array(b) for b in lp.blobs] for lp in model.layer}
        for blob in solver.blobs:
            key = f"{blob.layer}/{blob.index}"
            ref_w = want[blob.layer][blob.index].reshape(blob.param.shape)
            errs[key] = max(errs.get(key, 0.0), rel_err(blob.param.detach().numpy(), ref_w))
    loss_err = float(np.abs(np.array(losses) - ref["losses"]).max() / np.abs(ref["losses"]).max())
    worst = max(errs, key=errs.get)
    report(
        f"3 steps  {case:30s} losses {' '.join(f'{v:.4g}' for v in ref['losses'])}  "
        f"loss err {loss_err:.1e}  worst weight {worst} {errs[worst]:.1e}"
    )
    if saturate:
        assert ref["losses"][0] > 20, ref["losses"]  # saturated samples in the first batch
    assert loss_err <= TOL, (losses, ref["losses"])
    assert errs[worst] <= (FROM_SCRATCH_TOL if case == "paper flow net" else TOL), errs


def test_the_suite_reads_its_solver_files():
    """The oracle copies keep what matters of the real solver files."""
    sp = read_solver_prototxt(ROOT / "prototxt/paper/onevsall_solver.prototxt")
    assert sp.base_lr > 0 and sp.momentum == pytest.approx(0.9)
    assert textwrap.dedent(CAFFE_SCRIPT).count("solver.step(1)") == 1


def test_bench_engine_runs_with_pycaffe():
    """bench/engine.py's pycaffe side (it once died on a missing import): one tiny iteration."""
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench/engine.py"), "--batch", "2", "--iters", "1",
         "--warmup", "0", "--modes", "finetune"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    line = res.stdout.strip().splitlines()[-1]
    assert "pycaffe" in line and "ratio facs/caffe" in line, res.stdout
