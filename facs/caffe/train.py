"""`facs train`: train a net from a Caffe solver prototxt (one process, or DDP via torchrun).

facs train --solver prototxt/quick/alexnet_finetune_solver.prototxt [--weights W.caffemodel]
facs train --solver S --resume S_iter_500.solverstate
torchrun --nproc_per_node 2 -m facs.caffe.train --solver S     # DistributedDataParallel
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from facs.caffe.solver import Solver
from facs.cli import main as cli_main
from facs.errors import FacsError


def _init_distributed(device: str) -> str:
    """Join the torchrun process group if this process was started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return device


def train(
    solver_path: str | Path,
    weights: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "cpu",
    seed: int | None = None,
    log: bool = True,
) -> Path:
    """Train to the solver's max_iter; returns the final .caffemodel path (same on all ranks)."""
    if weights is not None and resume is not None:
        raise FacsError("give --weights or --resume, not both")
    device = _init_distributed(device)
    solver = Solver(solver_path, device=device, seed=seed, log=log)
    try:
        if resume is not None:
            solver.restore(resume)  # first, so the log and CSV of the resumed run continue
        solver.log.line(f"facs train: solver {solver_path}, device {device}, seed {solver.seed}, "
                        f"{solver.world} process(es)")  # fmt: skip
        # Caffe loads the solver's own `weights:` entries first, then the command line's.
        for w in solver.sp.weights:
            solver.load_weights(_resolve_from(w, Path(solver_path).parent))
        if weights is not None:
            solver.load_weights(weights)
        return solver.solve()
    finally:
        solver.close()


def _resolve_from(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solver", required=True, type=Path, help="solver .prototxt")
    parser.add_argument(
        "--weights", type=Path, help="initialise from a .caffemodel (by layer name)"
    )
    parser.add_argument("--resume", type=Path, help="continue from a .solverstate")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, help="random seed (default: the solver's, else 0)")


def run(args: argparse.Namespace) -> int:
    final = train(args.solver, weights=args.weights, resume=args.resume, device=args.device,
                  seed=args.seed)  # fmt: skip
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(f"final weights: {final}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m facs.caffe.train` / `torchrun -m facs.caffe.train`."""
    code = cli_main(["train", *(sys.argv[1:] if argv is None else argv)])
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
