"""`facs train` / Solver on a tiny prototxt net over real LMDBs: Caffe's update through lr_mult
and decay_mult, frozen blobs, exact resume, the log, fine-tuning, DDP with torchrun, errors."""

from __future__ import annotations

import csv
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
from facs.caffe.io import blob_to_array, read_caffemodel
from facs.caffe.net import Net
from facs.caffe.solver import Solver
from facs.caffe.train import train
from facs.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
L = 2


def write_split(root: Path, name: str, n: int, seed: int) -> None:
    """Image LMDB (3x8x8 uint8) and label LMDB (2 floats); label k: channel k is bright."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, L))
    img_env = lmdb.open(str(root / f"{name}_img_lmdb"), map_size=1 << 24)
    lab_env = lmdb.open(str(root / f"{name}_lab_lmdb"), map_size=1 << 24)
    with img_env.begin(write=True) as ti, lab_env.begin(write=True) as tl:
        for i in range(n):
            img = rng.integers(0, 120, (3, 8, 8))
            img[:L] += 120 * labels[i, :, None, None]
            key = f"{i:08d}_clip{i % 3}_{i:05d}".encode()
            d = caffe_pb2.Datum(channels=3, height=8, width=8, data=img.astype(np.uint8).tobytes())
            ti.put(key, d.SerializeToString())
            d = caffe_pb2.Datum(channels=L, height=1, width=1, float_data=labels[i].tolist())
            tl.put(key, d.SerializeToString())
    img_env.close()
    lab_env.close()


def data_layers(phase: str, batch: int, transform: str) -> str:
    prefix = "train" if phase == "TRAIN" else "test"
    return "".join(
        f'layer {{ name: "{n}" type: "Data" top: "{n}" include {{ phase: {phase} }} '
        f"{transform if n == 'data' else ''} "
        f'data_param {{ source: "{prefix}_{kind}_lmdb" batch_size: {batch} backend: LMDB }} }}\n'
        for n, kind in (("data", "img"), ("label", "lab"))
    )


def net_text(dropout: bool = True, random_transform: bool = True, batch: int = 4) -> str:
    tr = "crop_size: 6 mirror: true" if random_transform else ""
    norm = "mean_value: 128 scale: 0.0078125"
    drop = (
        'layer { name: "drop1" type: "Dropout" bottom: "fc1" top: "fc1" '
        "dropout_param { dropout_ratio: 0.5 } }"
        if dropout
        else ""
    )
    return (
        'name: "tiny"\n'
        + data_layers("TRAIN", batch, f"transform_param {{ {tr} {norm} }}")
        + data_layers("TEST", 5, f"transform_param {{ crop_size: 6 {norm} }}")
        + textwrap.dedent(f"""
        layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
          param {{ lr_mult: 0 }} param {{ lr_mult: 0 }}
          convolution_param {{ num_output: 4 kernel_size: 3
            weight_filler {{ type: "gaussian" std: 0.1 }}
            bias_filler {{ type: "constant" value: 0.1 }} }} }}
        layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
        layer {{ name: "fc1" type: "InnerProduct" bottom: "conv1" top: "fc1"
          param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
          inner_product_param {{ num_output: 8 weight_filler {{ type: "xavier" }} }} }}
        {drop}
        layer {{ name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
          inner_product_param {{ num_output: {L} weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "fc2" bottom: "label"
          top: "loss" }}
        """)
    )


def solver_text(net: str = "net.prototxt", prefix: str = "snap/tiny", **kw) -> str:
    fields = dict(
        base_lr=0.05, lr_policy='"step"', gamma=0.5, stepsize=3, momentum=0.9,
        weight_decay=0.01, max_iter=8, display=1, test_iter=2, test_interval=4, snapshot=4,
        random_seed=7,
    )  # fmt: skip
    fields.update(kw)
    body = "\n".join(f"{k}: {v}" for k, v in fields.items() if v is not None)
    return f'net: "{net}"\nsnapshot_prefix: "{prefix}"\n{body}\n'


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    write_split(root, "train", 24, seed=0)
    write_split(root, "test", 10, seed=1)
    (root / "net.prototxt").write_text(net_text())
    (root / "plain.prototxt").write_text(net_text(dropout=False, random_transform=False))
    return root


def blobs_of(path: Path) -> dict[str, list[np.ndarray]]:
    return {lp.name: [blob_to_array(b) for b in lp.blobs] for lp in read_caffemodel(path).layer}


def test_caffe_update_through_lr_mult_and_decay_mult(work):
    """Two solver iterations equal Caffe's formula applied by hand to autograd gradients."""
    s = work / "plain_solver.prototxt"
    s.write_text(solver_text("plain.prototxt", "snap/plain", max_iter=2, test_iter=None,
                             test_interval=None, snapshot=None, display=0))  # fmt: skip
    final = train(s, log=False)
    # By hand: same seed -> same fillers; TEST-free deterministic data (centre crop, no mirror).
    torch.manual_seed(7)
    net = Net.from_prototxt(work / "plain.prototxt", "TRAIN", base_dir=work)
    hist = {id(b.param): torch.zeros_like(b.param) for b in net.learnable}
    for it in range(2):
        lr = 0.05 * 0.5 ** (it // 3)
        for b in net.learnable:
            b.param.grad = None
        net.loss(net()).backward()
        with torch.no_grad():
            for b in net.learnable:
                if b.lr_mult == 0:
                    continue
                g = b.param.grad + 0.01 * b.decay_mult * b.param
                hist[id(b.param)] = 0.9 * hist[id(b.param)] + lr * b.lr_mult * g
                b.param -= hist[id(b.param)]
    got = blobs_of(final)
    for b in net.learnable:
        np.testing.assert_allclose(got[b.layer][b.index], b.param.detach().numpy(), atol=1e-6)


def test_iter_size_accumulates_like_a_bigger_batch(work):
    """iter_size 2 x batch 4 == iter_size 1 x batch 8 (same records, loss normalised by batch)."""
    (work / "b8.prototxt").write_text(net_text(False, False, batch=8))
    finals = []
    for name, net, iter_size in (("i2", "plain.prototxt", 2), ("b8", "b8.prototxt", 1)):
        s = work / f"{name}_solver.prototxt"
        s.write_text(solver_text(net, f"snap/{name}", max_iter=3, iter_size=iter_size,
                                 test_iter=None, test_interval=None, snapshot=None))  # fmt: skip
        finals.append(blobs_of(train(s, log=False)))
    for layer, arrays in finals[0].items():
        for x, y in zip(arrays, finals[1][layer], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7, err_msg=layer)


def test_frozen_blobs_bit_identical_and_resume_is_exact(work):
    (work / "solver.prototxt").write_text(solver_text())
    a = Solver(work / "solver.prototxt")
    conv_before = [b.param.detach().clone() for b in a.blobs if b.layer == "conv1"]
    fc_before = [b.param.detach().clone() for b in a.blobs if b.layer == "fc1"]
    final_a = a.solve()
    assert final_a == work / "snap" / "tiny_iter_8.caffemodel"
    got = blobs_of(final_a)
    for k, before in enumerate(conv_before):  # lr_mult 0: untouched, bit for bit
        assert np.array_equal(got["conv1"][k], before.numpy())
    assert not np.array_equal(got["fc1"][0], fc_before[0].numpy())  # trained blobs moved
    assert len(a.losses) == 8 and len(set(a.losses)) > 1

    # Resume from the iteration-4 snapshot into another prefix: same losses, same weights.
    (work / "resume.prototxt").write_text(solver_text(prefix="snap/resumed"))
    b = Solver(work / "resume.prototxt")
    final_b = b.solve(resume=work / "snap" / "tiny_iter_4.solverstate")
    assert b.losses == a.losses[4:]
    for name, arrays in blobs_of(final_b).items():
        for x, y in zip(arrays, got[name], strict=True):
            assert np.array_equal(x, y), name

    # Test passes at iterations 4 and 8 give the same numbers in both CSVs.
    def tests(path):
        with open(path) as f:
            return [r[:4] for r in csv.reader(f) if r[1] == "test"]

    ta, tb = tests(work / "snap" / "tiny_train.csv"), tests(work / "snap" / "resumed_train.csv")
    assert ta[-len(tb) :] == tb and len(tb) == 2


def test_resumed_run_logs_each_iteration_once_as_the_uninterrupted_run(work):
    """A run killed after its iteration-4 snapshot (its log and CSV reached iteration 6), then
    resumed into the same prefix: the files hold every iteration once, with the smoothed
    losses of the run that was never interrupted (average_loss > 1, so the window counts)."""
    import shutil

    (work / "solver.prototxt").write_text(solver_text(prefix="snap/full", average_loss=3))
    train(work / "solver.prototxt")
    full_csv = (work / "snap" / "full_train.csv").read_text().splitlines()
    full_log = (work / "snap" / "full_train.log").read_text().splitlines()

    # the killed run: its files up to iteration 6, its snapshot at 4
    (work / "solver.prototxt").write_text(solver_text(prefix="snap/killed", average_loss=3))
    for ext in ("caffemodel", "solverstate"):
        shutil.copy(work / "snap" / f"full_iter_4.{ext}", work / "snap" / f"killed_iter_4.{ext}")
    cut = [r for r in full_csv if not r[:1].isdigit() or int(r.split(",")[0]) <= 6]
    (work / "snap" / "killed_train.csv").write_text("\n".join(cut) + "\n")
    k = next(i for i, t in enumerate(full_log) if t.startswith("Iteration 7"))
    (work / "snap" / "killed_train.log").write_text("\n".join(full_log[:k]) + "\n")

    train(work / "solver.prototxt", resume=work / "snap" / "killed_iter_4.solverstate")
    resumed = (work / "snap" / "killed_train.csv").read_text().splitlines()

    def rows(lines):  # without the seconds column
        return [tuple(r.split(",")[:5]) for r in lines]

    assert rows(resumed) == rows(full_csv)
    log = (work / "snap" / "killed_train.log").read_text().splitlines()
    losses = [t for t in log if ", loss = " in t]
    assert losses == [t for t in full_log if ", loss = " in t]
    assert sum(t.startswith("Iteration 4, loss") for t in log) == 1


def test_log_lines_in_caffe_format(work):
    (work / "solver.prototxt").write_text(solver_text(max_iter=4))
    train(work / "solver.prototxt")
    log = (work / "snap" / "tiny_train.log").read_text().splitlines()
    for expected in (
        "Iteration 0, Testing net (#0)",
        "Iteration 0, lr = 0.05",
        "Iteration 3, lr = 0.025",
        "Iteration 4, Testing net (#0)",
    ):
        assert expected in log
    assert any(x.startswith("Iteration 0, loss = ") for x in log)
    assert any(x.startswith("    Train net output #0: loss = ") for x in log)
    assert any(x.startswith("    Test net output #0: loss = ") for x in log)
    assert (work / "snap" / "tiny_iter_4.solverstate").exists()
    rows = list(csv.DictReader(open(work / "snap" / "tiny_train.csv")))
    assert {r["phase"] for r in rows} == {"train", "test"}
    assert [r["iteration"] for r in rows if r["output"] == "smoothed_loss"] == list("0123")


def make_donor(work: Path) -> list[caffe_pb2.LayerParameter]:
    """donor.caffemodel: random conv1 and fc1 blobs only (no fc2)."""
    torch.manual_seed(123)
    donor = Net.from_prototxt(work / "plain.prototxt", "TEST", base_dir=work)
    param = donor.to_proto()
    keep = [lp for lp in param.layer if lp.name in ("conv1", "fc1")]
    del param.layer[:]
    param.layer.extend(keep)
    (work / "donor.caffemodel").write_bytes(param.SerializeToString())
    return keep


def test_weights_fine_tuning_names_layers_left_at_fillers(work, capsys):
    # A caffemodel holding only conv1 and fc1: fc2 keeps its fillers and the log says so.
    keep = make_donor(work)
    (work / "ft.prototxt").write_text(solver_text(prefix="snap/ft", max_iter=1, snapshot=None))
    final = train(work / "ft.prototxt", weights=work / "donor.caffemodel")
    out = capsys.readouterr().out
    assert "Copying layers from" in out and "conv1, fc1" in out
    assert "Layer fc2 is not in donor.caffemodel" in out
    got = blobs_of(final)
    assert np.array_equal(got["conv1"][0], blob_to_array(keep[0].blobs[0]))


def _rank_script(work: Path, name: str, prefix: str) -> Path:
    """A training script for torchrun: solve, then save this rank's weights and losses as
    {prefix}{rank}.npy and losses{rank}.npy in the folder given as its second argument."""
    script = work / name
    script.write_text(
        textwrap.dedent(f"""
        import sys
        import numpy as np
        import torch
        from facs.caffe.solver import Solver
        from facs.caffe.train import _init_distributed
        _init_distributed("cpu")
        solver = Solver(sys.argv[1])
        solver.solve()
        rank = torch.distributed.get_rank()
        flat = torch.cat([b.param.detach().reshape(-1) for b in solver.blobs]).numpy()
        np.save(f"{{sys.argv[2]}}/{prefix}{{rank}}.npy", flat)
        np.save(f"{{sys.argv[2]}}/losses{{rank}}.npy", np.array(solver.losses))
        torch.distributed.destroy_process_group()
        """)
    )
    return script


def test_ddp_two_processes_gloo_same_weights(work):
    (work / "ddp.prototxt").write_text(solver_text(prefix="snap/ddp", max_iter=3, snapshot=None))
    script = _rank_script(work, "ddp_run.py", "rank")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd = [*run, "--master_port", "29533", str(script), str(work / "ddp.prototxt"), str(work)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    w0, w1 = np.load(work / "rank0.npy"), np.load(work / "rank1.npy")
    assert np.array_equal(w0, w1)
    # Each rank read its own half of the data: their losses differ.
    assert not np.array_equal(np.load(work / "losses0.npy"), np.load(work / "losses1.npy"))
    assert (work / "snap" / "ddp_iter_3.caffemodel").exists()
    assert "Iteration 2, lr = " in res.stdout and res.stdout.count("Iteration 2, lr = ") == 1


def test_cli_errors_name_the_file(work, capsys):
    assert cli_main(["train", "--solver", str(work / "nope.prototxt")]) == 2
    assert "nope.prototxt" in capsys.readouterr().err
    (work / "bad1.prototxt").write_text(solver_text(net="missing_net.prototxt"))
    assert cli_main(["train", "--solver", str(work / "bad1.prototxt")]) == 2
    assert "missing_net.prototxt" in capsys.readouterr().err
    (work / "badnet.prototxt").write_text(net_text().replace("train_img_lmdb", "gone_lmdb"))
    (work / "bad2.prototxt").write_text(solver_text(net="badnet.prototxt"))
    assert cli_main(["train", "--solver", str(work / "bad2.prototxt")]) == 2
    err = capsys.readouterr().err
    assert "layer 'data'" in err and "gone_lmdb" in err


def test_solver_weights_field_equals_command_line_weights(work):
    """`weights:` in the solver (relative to it) fine-tunes exactly like --weights."""
    make_donor(work)
    (work / "ftw.prototxt").write_text(
        'weights: "donor.caffemodel"\n' + solver_text(prefix="snap/ftw", max_iter=1, snapshot=None)
    )
    (work / "ftc.prototxt").write_text(solver_text(prefix="snap/ftc", max_iter=1, snapshot=None))
    a = blobs_of(train(work / "ftw.prototxt", log=False))
    b = blobs_of(train(work / "ftc.prototxt", weights=work / "donor.caffemodel", log=False))
    for name, arrays in a.items():
        for x, y in zip(arrays, b[name], strict=True):
            assert np.array_equal(x, y), name


def test_ddp_two_nodes_on_loopback(work):
    """Multi-node DDP as a cluster runs it: two torchrun launchers (--nnodes 2, one process
    each, node ranks 0 and 1) meeting at a c10d rendezvous on loopback, standing in for two
    machines; the ranks end with the same weights."""
    (work / "mn.prototxt").write_text(solver_text(prefix="snap/mn", max_iter=2, snapshot=None))
    script = _rank_script(work, "mn_run.py", "mn")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc_per_node", "1", "--node_rank", str(node), "--rdzv_backend", "c10d",
               "--rdzv_endpoint", "127.0.0.1:29547", "--rdzv_id", "facs-test",
               str(script), str(work / "mn.prototxt"), str(work)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
    assert np.array_equal(np.load(work / "mn0.npy"), np.load(work / "mn1.npy"))
