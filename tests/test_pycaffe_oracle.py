"""Real Caffe as an oracle: same prototxt, weights and LMDB data give the same forward outputs
and the same losses over 5 SGD steps in pycaffe and in facs.

pycaffe runs in a subprocess: its caffe_pb2 and facs' declare the same protobuf package, so
the two never load into one process. Skipped where `import caffe` fails (build it with
scripts/install_caffe.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

from facs.caffe import caffe_pb2
from facs.caffe.net import Net
from facs.caffe.solver import Solver

HAVE_CAFFE = (
    subprocess.run([sys.executable, "-c", "import caffe"], capture_output=True).returncode == 0
)
pytestmark = pytest.mark.skipif(
    not HAVE_CAFFE,
    reason="pycaffe is not installed: scripts/install_caffe.sh builds BVLC Caffe (CPU) from the "
    "PyPI sdist brocolli-caffe into .venv (apt -dev packages, ~5-10 min on 2 cores)",
)

NET = """
name: "oracle"
layer { name: "data" type: "Data" top: "data"
  transform_param { mean_value: 120 scale: 0.01 }
  data_param { source: "img_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "label" type: "Data" top: "label"
  data_param { source: "lab_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 0 } param { lr_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 group: 2
    weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.05 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "conv2" top: "fc1"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "fc1" bottom: "label" top: "loss" }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.05
lr_policy: "step"
gamma: 0.5
stepsize: 2
momentum: 0.9
weight_decay: 0.005
max_iter: 5
display: 1
snapshot_after_train: false
solver_mode: CPU
snapshot_prefix: "facs"
"""

CAFFE_SCRIPT = """
import gc, json, sys
import numpy as np
import caffe
caffe.set_mode_cpu()
out = {}
net = caffe.Net("net.prototxt", "init.caffemodel", caffe.TEST)
net.forward()
out["forward"] = {k: net.blobs[k].data.tolist() for k in ("conv1", "pool1", "fc1", "loss")}
# Caffe's DataReader shares one reader thread among live nets with the same layer and source:
# free this net first, so the solver's net reads the LMDB from its start, alone.
del net
gc.collect()
solver = caffe.SGDSolver("solver.prototxt")
solver.net.copy_from("init.caffemodel")
losses = []
for _ in range(5):
    solver.step(1)
    losses.append(float(solver.net.blobs["loss"].data))
out["losses"] = losses
out["fc1"] = solver.net.params["fc1"][0].data.tolist()
print(json.dumps(out))
"""


def write_lmdbs(root: Path, n: int) -> None:
    """img_lmdb (3x9x9 uint8 Datum) and lab_lmdb (3 floats in float_data), keys in order."""
    rng = np.random.default_rng(3)
    for name in ("img_lmdb", "lab_lmdb"):
        env = lmdb.open(str(root / name), map_size=1 << 24)
        with env.begin(write=True) as txn:
            for i in range(n):
                if name == "img_lmdb":
                    img = rng.integers(0, 256, (3, 9, 9), dtype=np.uint8)
                    d = caffe_pb2.Datum(channels=3, height=9, width=9, data=img.tobytes())
                else:
                    d = caffe_pb2.Datum(channels=3, height=1, width=1,
                                        float_data=rng.integers(0, 2, 3).tolist())  # fmt: skip
                txn.put(f"{i:08d}".encode(), d.SerializeToString())
        env.close()


def test_pycaffe_and_facs_agree(tmp_path):
    write_lmdbs(tmp_path, 16)
    (tmp_path / "net.prototxt").write_text(textwrap.dedent(NET))
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    torch.manual_seed(0)
    init = Net.from_prototxt(tmp_path / "net.prototxt", "TEST", base_dir=tmp_path)
    init.save_caffemodel(tmp_path / "init.caffemodel")
    (tmp_path / "run_caffe.py").write_text(CAFFE_SCRIPT)

    env = dict(os.environ, GLOG_minloglevel="2")
    res = subprocess.run([sys.executable, "run_caffe.py"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    ref = json.loads(res.stdout.strip().splitlines()[-1])

    net = Net.from_prototxt(tmp_path / "net.prototxt", "TEST", base_dir=tmp_path)
    net.load_caffemodel(tmp_path / "init.caffemodel")
    with torch.no_grad():
        net()
    for name, want in ref["forward"].items():
        np.testing.assert_allclose(net.blobs[name].numpy(), np.array(want), rtol=1e-4, atol=1e-5,
                                   err_msg=name)  # fmt: skip

    solver = Solver(tmp_path / "solver.prototxt", log=False)
    solver.load_weights(tmp_path / "init.caffemodel")
    solver.solve()
    np.testing.assert_allclose(solver.losses, ref["losses"], rtol=1e-4, atol=1e-6)
    fc1 = next(b.param for b in solver.blobs if b.layer == "fc1" and b.index == 0)
    np.testing.assert_allclose(fc1.detach().numpy(), np.array(ref["fc1"]), rtol=1e-3, atol=1e-5)
