"""Caffe's Solver: SGD (and Nesterov) over a prototxt-built Net, with Caffe's loop and files.

The loop is Caffe's Solver::Step: test every `test_interval` iterations (TEST-phase nets share
the train net's weights), `iter_size` forward/backward passes per update, smoothed loss shown
every `display` iterations, gradient clipping, lr_mult/decay_mult, snapshots of
`<snapshot_prefix>_iter_N.caffemodel` + `.solverstate` (history = momentum buffers).

Randomness is counter-based so a resumed run continues exactly: dropout is reseeded from
(seed, iteration, pass, rank) before every forward pass, and a Data layer's batch is a pure
function of its batch index (see data_layer.py), so resuming only needs the iteration number.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import torch

from facs.caffe import caffe_pb2, lrn, sgd
from facs.caffe.io import (
    blob_to_array,
    layer_lines,
    read_net_prototxt,
    read_solver_prototxt,
    read_solverstate,
    write_solverstate,
)
from facs.caffe.net import Net
from facs.caffe.trainlog import TrainLog
from facs.errors import FacsError


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def read_solver(path: Path) -> caffe_pb2.SolverParameter:
    if not path.exists():
        raise FacsError(f"{path}: solver file does not exist")
    return read_solver_prototxt(path)


class NetSource(NamedTuple):
    """A net of a solver: its NetParameter, the folder its relative paths start from, and the
    file (with the line of each layer) that errors name."""

    param: caffe_pb2.NetParameter
    base_dir: Path
    source: Path
    lines: list[int] | None

    def build(self, phase: str):
        return Net(self.param, phase, base_dir=self.base_dir, source=self.source,
                   lines=self.lines)  # fmt: skip


def _read_net(path: Path, what: str) -> NetSource:
    if not path.exists():
        raise FacsError(f"{what}: net file {path} does not exist")
    lines = layer_lines(path.read_text(encoding="utf-8"))
    return NetSource(read_net_prototxt(path), path.parent, path, lines)


def net_params(sp: caffe_pb2.SolverParameter, solver_path: Path):
    """(train NetSource, [test NetSource, ...]) of a solver; paths relative to the solver."""
    base = solver_path.parent
    what = str(solver_path)
    given = [sp.HasField(f) for f in ("net", "net_param", "train_net", "train_net_param")]
    if sum(given) != 1:
        raise FacsError(f"{what}: give exactly one of net, net_param, train_net, train_net_param")
    if sp.HasField("net") or sp.HasField("train_net"):
        train = _read_net(_resolve(sp.net or sp.train_net, base), what)
    else:
        param = sp.net_param if sp.HasField("net_param") else sp.train_net_param
        train = NetSource(param, base, solver_path, None)
    tests = [_read_net(_resolve(t, base), what) for t in sp.test_net]
    tests += [NetSource(t, base, solver_path, None) for t in sp.test_net_param]
    # A single `net` doubles as the test net (TEST phase), once per test_iter entry.
    if not tests and (sp.HasField("net") or sp.HasField("net_param")):
        tests = [train] * len(sp.test_iter)
    if len(sp.test_iter) != len(tests):
        raise FacsError(f"{what}: {len(sp.test_iter)} test_iter for {len(tests)} test nets")
    if tests and sp.test_interval <= 0:
        tests = []  # Caffe: no test_interval, no testing
    return train, tests


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _seed_for(seed: int, it: int, k: int, rank: int) -> int:
    return (seed * 1_000_003 + it * 4099 + k * 257 + rank * 7919 + 12345) % (2**63 - 1)


class Solver:
    """A Caffe solver over facs Nets. `solve()` runs to max_iter and returns the final weights."""

    def __init__(self, solver_path: str | Path, device: str = "cpu", seed: int | None = None,
                 log: bool = True, log_path: Path | None = None):  # fmt: skip
        self.path = Path(solver_path)
        what = str(self.path)
        self.sp = sp = read_solver(self.path)
        self.type = (sp.type or "SGD") if sp.HasField("type") else _solver_type_name(sp)
        if self.type not in ("SGD", "Nesterov"):
            raise FacsError(f"{what}: solver type '{self.type}' is not supported (SGD, Nesterov)")
        sgd.check_policy(sp, what)
        if sp.max_iter <= 0:
            raise FacsError(f"{what}: max_iter must be positive")
        if sp.iter_size < 1:
            raise FacsError(f"{what}: iter_size must be >= 1")
        self.rank, self.world = _dist()
        if seed is None:
            seed = int(sp.random_seed) if sp.random_seed >= 0 else 0
        self.seed = seed
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise FacsError("--device cuda: no CUDA device is available here")
        torch.manual_seed(seed)  # fillers, and the base seed of the Data layers
        if self.device.type == "cpu":
            lrn.compile_kernels()  # fused LRN kernels: worth their compile time in training
        train, tests = net_params(sp, self.path)
        self.net = train.build("TRAIN").to(self.device)
        # Unique learnable blobs (a shared ParamSpec name gives one tensor several entries).
        self.blobs, seen = [], set()
        for b in self.net.learnable:
            if id(b.param) not in seen:
                seen.add(id(b.param))
                self.blobs.append(b)
        for b in self.blobs:
            b.param.requires_grad_(b.lr_mult != 0)  # frozen blobs: no gradient work at all
        self.history = [torch.zeros_like(b.param) for b in self.blobs]
        self.train_data = list(self.net.data_layers)
        self.test_nets = []
        if self.rank == 0:  # as in Caffe's multi-GPU training, only the root solver tests
            for k, spec in enumerate(tests):
                tnet = spec.build("TEST").to(self.device).eval()
                self._share_weights(tnet)
                self.test_nets.append((tnet, int(sp.test_iter[k]), list(tnet.data_layers)))
        self.model = self.net
        if self.world > 1:
            if not any(b.param.requires_grad for b in self.blobs):
                raise FacsError(f"{what}: nothing to train (every blob has lr_mult 0)")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=ids, find_unused_parameters=bool(_off_loss_path(self.net))
            )
        if sp.snapshot_format == caffe_pb2.SolverParameter.HDF5:
            raise FacsError(f"{what}: snapshot_format HDF5 is not supported (use BINARYPROTO)")
        prefix = sp.snapshot_prefix or str(self.path.with_suffix(""))
        self.prefix = _resolve(prefix, self.path.parent)
        lp = log_path or Path(f"{self.prefix}_train.log")
        self.log = TrainLog(lp, lp.with_suffix(".csv"), enabled=log and self.rank == 0)
        self.iter = 0
        self.tests_done = 0
        self.losses: list[float] = []  # raw loss of every iteration this process ran
        self._window: list[float] = []
        self.resumed_from: int | None = None
        self.last_snapshot: Path | None = None

    # -- weights -----------------------------------------------------------------------------
    def _share_weights(self, tnet) -> None:
        """TEST net blobs become views of the train net's blobs with the same layer name."""
        own = {(b.layer, b.index): b.param for b in self.net.learnable}
        for b in tnet.learnable:
            p = own.get((b.layer, b.index))
            if p is not None and p.shape == b.param.shape:
                b.param.data = p.data

    def load_weights(self, path: str | Path) -> list[str]:
        """Fine-tuning: copy blobs by layer name; returns the learnable layers left at their
        fillers (named in the log)."""
        path = Path(path)
        if not path.exists():
            raise FacsError(f"{path}: weights file does not exist")
        copied = set(self.net.load_caffemodel(path))
        kept = sorted({b.layer for b in self.net.learnable if b.layer not in copied})
        self.log.line(f"Copying layers from {path}: {', '.join(sorted(copied)) or 'none'}")
        for name in kept:
            self.log.line(f"Layer {name} is not in {path.name}: it keeps its filler values")
        return kept

    # -- snapshot / restore ------------------------------------------------------------------
    def snapshot(self, weights_only: bool = False) -> Path:
        model = Path(f"{self.prefix}_iter_{self.iter}.caffemodel")
        model.parent.mkdir(parents=True, exist_ok=True)
        self.log.line(f"Snapshotting to binary proto file {model}")
        self.net.save_caffemodel(model)
        if not weights_only:
            sstate = model.with_suffix(".solverstate")
            self.log.line(f"Snapshotting solver state to binary proto file {sstate}")
            history = [h.detach().cpu().numpy() for h in self.history]
            cur = sgd.current_step(self.sp, self.iter)
            write_solverstate(sstate, self.iter, str(model), history, current_step=cur,
                              loss_window=self._window)  # fmt: skip
        self.last_snapshot = model
        return model

    def restore(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise FacsError(f"{path}: solver state does not exist")
        state = read_solverstate(path)
        if len(state.history) != len(self.history):
            raise FacsError(f"{path}: {len(state.history)} history blobs, "
                            f"the net has {len(self.history)} learnable blobs")  # fmt: skip
        self.log.line(f"Restoring previous solver status from {path}")
        model = Path(state.learned_net)
        if not model.is_absolute() and not model.exists():
            model = path.parent / model.name
        if not model.exists():
            model = path.with_suffix(".caffemodel")
        if not model.exists():
            raise FacsError(f"{path}: its learned_net {state.learned_net} does not exist")
        self.net.load_caffemodel(model)
        for k, (h, bp) in enumerate(zip(self.history, state.history, strict=True)):
            arr = blob_to_array(bp)
            if arr.size != h.numel():
                raise FacsError(f"{path}: history blob {k} has {arr.size} values, "
                                f"expected {h.numel()}")  # fmt: skip
            h.copy_(torch.from_numpy(arr.reshape(h.shape)))
        self.iter = int(state.iter)
        self._window = [float(v) for v in state.facs_loss_window]
        self.resumed_from = self.iter
        # Data and test positions are pure functions of the iteration number.
        ti = self.sp.test_interval
        if self.test_nets and ti > 0 and self.iter > 0:
            passes = (self.iter + ti - 1) // ti
            self.tests_done = passes - (0 if self.sp.test_initialization else 1)

    # -- one iteration -----------------------------------------------------------------------
    def _forward(self, model, it: int, k: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(_seed_for(self.seed, it, k, self.rank))
        return model()

    @staticmethod
    def _loss_weights(net) -> dict[str, float]:
        return dict(net.loss_weights)

    @staticmethod
    def _flat(outputs: dict[str, torch.Tensor], weights: dict[str, float]):
        rows = []
        for name, t in outputs.items():
            vals = t.detach().float().reshape(-1).cpu().numpy()
            w = weights.get(name, 0.0)
            rows.extend((name, float(v), w) for v in vals)
        return rows

    def test_all(self) -> list[list[tuple[str, float, float]]]:
        results = []
        for k, (tnet, n_iter, layers) in enumerate(self.test_nets):
            for layer in layers:  # Caffe's test reader continues where the last pass stopped
                layer.seek(self.tests_done * n_iter)
            self.log.line(f"Iteration {self.iter}, Testing net (#{k})")
            weights = self._loss_weights(tnet)
            sums: dict[str, torch.Tensor] = {}
            loss = 0.0
            with torch.no_grad():
                for i in range(n_iter):
                    torch.manual_seed(_seed_for(self.seed, self.iter, 10_000 + i, 0))
                    out = tnet()
                    if self.sp.test_compute_loss:
                        loss += float(tnet.loss(out))
                    for name, t in out.items():
                        t = t.detach().double()
                        sums[name] = sums[name] + t if name in sums else t.clone()
            if self.sp.test_compute_loss:
                self.log.line(f"Test loss: {loss / n_iter:g}")
            means = {name: s / n_iter for name, s in sums.items()}
            rows = self._flat(means, weights)
            self.log.outputs(self.iter, "test", rows)
            results.append(rows)
        self.tests_done += 1
        return results

    def step(self, iters: int) -> None:
        sp = self.sp
        stop = self.iter + iters
        for layer in self.train_data:
            layer.seek(self.iter * sp.iter_size)
        weights = self._loss_weights(self.net)
        while self.iter < stop:
            if (
                sp.test_interval
                and self.iter % sp.test_interval == 0
                and (self.iter > 0 or sp.test_initialization)
            ):
                self.test_all()
            display = sp.display > 0 and self.iter % sp.display == 0
            for b in self.blobs:
                b.param.grad = None
            loss = 0.0
            outputs: dict[str, torch.Tensor] = {}
            for k in range(sp.iter_size):
                sync = self.world == 1 or k == sp.iter_size - 1
                ctx = self.model.no_sync() if not sync else _nullctx()
                with ctx:
                    outputs = self._forward(self.model, self.iter, k)
                    total = self.net.loss(outputs)
                    if not isinstance(total, torch.Tensor) or not total.requires_grad:
                        if any(b.param.requires_grad for b in self.blobs):
                            raise FacsError(f"{self.path}: the train net has no loss to minimise")
                    else:
                        total.backward()
                loss += float(total.detach()) if isinstance(total, torch.Tensor) else total
            loss /= sp.iter_size
            self.losses.append(loss)
            self._window.append(loss)
            if len(self._window) > max(sp.average_loss, 1):
                self._window.pop(0)
            smoothed = sum(self._window) / len(self._window)
            rate = sgd.learning_rate(sp, self.iter)
            if display:
                self.log.line(f"Iteration {self.iter}, loss = {smoothed:g}")
                self.log.row(self.iter, "train", "smoothed_loss", smoothed, rate)
                self.log.outputs(self.iter, "train", self._flat(outputs, weights), rate)
                self.log.line(f"Iteration {self.iter}, lr = {rate:g}")
            self._update(rate)
            self.iter += 1
            if sp.snapshot and self.iter % sp.snapshot == 0 and self.rank == 0:
                self.snapshot()

    @torch.no_grad()
    def _update(self, rate: float) -> None:
        sp = self.sp
        live = [(b, h) for b, h in zip(self.blobs, self.history, strict=True) if b.lr_mult != 0]
        grads = []
        for b, _ in live:
            if b.param.grad is None:
                b.param.grad = torch.zeros_like(b.param)
            grads.append(b.param.grad)
        factor = sgd.clip_gradients(grads, float(sp.clip_gradients))
        if factor is not None:
            self.log.line(f"Gradient clipping: scaling down gradients by scale factor {factor:g}")
        if sp.iter_size > 1:
            for g in grads:
                g.div_(sp.iter_size)
        for (b, h), g in zip(live, grads, strict=True):
            sgd.sgd_step(
                b.param.data, g, h,
                local_lr=rate * b.lr_mult,
                momentum=float(sp.momentum),
                local_decay=float(sp.weight_decay) * b.decay_mult,
                regularization=sp.regularization_type or "L2",
                nesterov=self.type == "Nesterov",
            )  # fmt: skip

    # -- the whole run -----------------------------------------------------------------------
    def solve(self, resume: str | Path | None = None) -> Path:
        sp = self.sp
        if resume is not None:
            self.restore(resume)
        self.log.begin(resume_from=self.resumed_from)
        self.log.line(f"Solving {self.net_name()}")
        self.log.line(f"Learning Rate Policy: {sp.lr_policy or 'fixed'}")
        t0 = time.perf_counter()
        self.step(max(sp.max_iter - self.iter, 0))
        final = None
        if self.rank == 0:
            if not (sp.snapshot and self.iter % sp.snapshot == 0):
                final = self.snapshot(weights_only=not sp.snapshot_after_train)
            final = final or self.last_snapshot
            if sp.display and self.iter % sp.display == 0:
                # Caffe's last line: the loss of one more forward pass, no update.
                with torch.no_grad():
                    out = self._forward(self.net, self.iter, 0)
                    self.log.line(f"Iteration {self.iter}, loss = {float(self.net.loss(out)):g}")
            if sp.test_interval and self.iter % sp.test_interval == 0:
                self.test_all()
            self.log.line(f"Optimization Done in {time.perf_counter() - t0:.2f} s.")
        else:
            final = Path(f"{self.prefix}_iter_{self.iter}.caffemodel")
        if self.world > 1:
            torch.distributed.barrier()
        self.close()
        return final

    def close(self) -> None:
        """Close the log and the Data layers (a failed start leaves nothing open)."""
        self.log.close()
        for layer in self.train_data + [x for t in self.test_nets for x in t[2]]:
            layer.close()

    def net_name(self) -> str:
        return getattr(self.net, "name", "") or str(self.path)


def _off_loss_path(net) -> set[str]:
    """Layers with trainable blobs that no loss depends on (DDP must then look for unused
    parameters every iteration; otherwise that costly search stays off)."""
    needed = set(net.loss_weights)
    used: set[str] = set()
    for lp in reversed(net.layer_params):
        if any(t in needed for t in lp.top):
            used.add(lp.name)
            needed.update(lp.bottom)
    return {b.layer for b in net.learnable if b.param.requires_grad and b.layer not in used}


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _solver_type_name(sp) -> str:
    names = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
    return names[int(sp.solver_type)]
