"""Caffe's across-channel LRN, fast and exact, forward and backward.

    y = x * s^-beta,   s = k + alpha/n * (sum of x^2 over the n channels centred on each one)

PyTorch's `F.local_response_norm` computes the same numbers, but through a 3-D average pool
and autograd's generic backward of `pow` and `div`: on AlexNet that was a fifth of a training
step. Here the window sum adds n shifted slices of the zero-padded squares, and the backward is
Caffe's closed form (lrn_layer.cpp, CrossChannelBackward_cpu), which reuses the forward's
s^-beta instead of differentiating pow:

    dx = dy * s^-beta - (2 * alpha * beta / n) * x * window_sum(dy * y / s)

For training (the solver calls `compile_kernels()`), both are compiled with `torch.compile`:
inductor fuses each into a few passes over memory (forward 141 -> 57 ms, backward 159 -> 28 ms
on 32x96x55x55). Compiling costs seconds once per process (~25 s the very first time on a
machine, then inductor's disk cache), so one-off predictions run the same functions eagerly.
Where compiling is impossible (no C compiler, an unsupported platform) training runs eagerly
too, with one note on stderr. FACS_COMPILE=0 never compiles; FACS_LRN=torch uses
`F.local_response_norm` instead (for comparisons).
"""

from __future__ import annotations

import os
import sys
import threading
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor


def _window_sum(t: Tensor, size: int) -> Tensor:
    """Sum over `size` neighbouring channels (zero padded) of an (N, C, H, W) tensor."""
    half = (size - 1) // 2
    c = t.shape[1]
    p = F.pad(t, (0, 0, 0, 0, half, half))
    s = p[:, 0:c]
    for i in range(1, size):
        s = s + p[:, i : i + c]
    return s


def _forward(x: Tensor, *, size: int, alpha: float, beta: float, k: float):
    scale = _window_sum(x * x, size) * (alpha / size) + k
    if beta == 0.75:  # AlexNet's: s^-3/4 = s^-1/2 * s^-1/4, a third faster than pow
        r = torch.rsqrt(scale)
        inv = r * torch.sqrt(r)
    else:
        inv = scale.pow(-beta)
    return x * inv, scale, inv


def _output(x: Tensor, *, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """The forward's output alone (inference: scale and s^-beta are not kept)."""
    return _forward(x, size=size, alpha=alpha, beta=beta, k=k)[0]


def _backward(x, y, scale, inv, dy, *, size: int, alpha: float, beta: float) -> Tensor:
    return dy * inv - (2.0 * alpha * beta / size) * x * _window_sum(dy * y / scale, size)


_COMPILE = False  # set by compile_kernels(); False again if compiling fails
_KERNELS: dict[tuple, tuple] = {}  # (size, alpha, beta, k) -> (forward, backward)
_LOCK = threading.Lock()


# One compiled function per role, each its own code object (torch.compile keeps a bounded
# cache of variants per code object: memory layout x grad mode x parameters stay well under it;
# partials would all share one wrapper's cache and overflow it).
def _forward_c(x: Tensor, size: int, alpha: float, beta: float, k: float):
    return _forward(x, size=size, alpha=alpha, beta=beta, k=k)


def _backward_c(x, y, scale, inv, dy, size: int, alpha: float, beta: float) -> Tensor:
    return _backward(x, y, scale, inv, dy, size=size, alpha=alpha, beta=beta)


def _output_c(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    return _output(x, size=size, alpha=alpha, beta=beta, k=k)


_COMPILED: tuple | None = None


def _compiled(size: int, alpha: float, beta: float, k: float):
    """(forward(x), backward(x, y, scale, inv, dy), output(x)) for these parameters, compiled
    (once per process; shapes and strides stay dynamic)."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = tuple(
            torch.compile(f, dynamic=True) for f in (_forward_c, _backward_c, _output_c)
        )
    fwd, bwd, out = _COMPILED
    return (
        lambda x: fwd(x, size, alpha, beta, k),
        lambda x, y, scale, inv, dy: bwd(x, y, scale, inv, dy, size, alpha, beta),
        lambda x: out(x, size, alpha, beta, k),
    )


def _eager(size: int, alpha: float, beta: float, k: float):
    return (
        partial(_forward, size=size, alpha=alpha, beta=beta, k=k),
        partial(_backward, size=size, alpha=alpha, beta=beta),
        partial(_output, size=size, alpha=alpha, beta=beta, k=k),
    )


def _note(why: str) -> None:
    print(f"facs: LRN runs uncompiled ({why})", file=sys.stderr)


def compile_kernels(on: bool = True) -> None:
    """Use compiled kernels from now on in this process (training: the solver calls this)."""
    global _COMPILE
    with _LOCK:
        _COMPILE = on and os.environ.get("FACS_COMPILE", "1") != "0"
        _KERNELS.clear()


def kernels(size: int, alpha: float, beta: float, k: float) -> tuple:
    """(forward, backward, output) for these parameters: compiled where torch.compile works
    (tried once per process, on a small input, so a platform without a compiler shows at
    once), else eager."""
    global _COMPILE
    key = (int(size), float(alpha), float(beta), float(k))
    with _LOCK:
        if key in _KERNELS:
            return _KERNELS[key]
        pair = _eager(*key)
        if _COMPILE:
            try:
                pair = _compiled(*key)
                x = torch.rand(2, max(6, key[0] + 1), 4, 4)  # sizes > 1: not specialised
                y, s, i = pair[0](x)
                pair[1](x, y, s, i, torch.ones_like(x))
                pair[2](x)
            except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly
                _COMPILE = False
                pair = _eager(*key)
                _note(f"torch.compile: {exc.__class__.__name__}")
        _KERNELS[key] = pair
        return pair


def _run(which: int, key: tuple, *args):
    """Run the compiled kernel, or the eager one if the compiled one fails on this input
    (then eager for the rest of the process, with one note)."""
    global _COMPILE
    pair = kernels(*key)
    try:
        return pair[which](*args)
    except Exception as exc:  # noqa: BLE001
        if not _COMPILE:
            raise
        with _LOCK:
            _COMPILE = False
            _KERNELS.clear()
        _note(f"a compiled kernel failed: {exc.__class__.__name__}")
        return kernels(*key)[which](*args)


class _CrossChannelLRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        x = x.detach()  # the kernels are plain tensor code: no autograd graph inside
        key = (size, alpha, beta, k)
        y, scale, inv = _run(0, key, x)
        ctx.save_for_backward(x, y, scale, inv)
        ctx.key = key
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, y, scale, inv = ctx.saved_tensors
        return _run(1, ctx.key, x, y, scale, inv, dy), None, None, None, None


def cross_channel_lrn(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """Caffe's ACROSS_CHANNELS LRN of an (N, C, H, W) tensor (odd `size`)."""
    if os.environ.get("FACS_LRN") == "torch":
        return F.local_response_norm(x, size, alpha, beta, k)
    if x.device.type != "cpu":  # shape inference on "meta" tensors; GPUs are fast as they are
        return _forward(x, size=size, alpha=alpha, beta=beta, k=k)[0]
    if not x.requires_grad:  # inference: nothing to keep for a backward
        return _run(2, (size, alpha, beta, k), x)
    return _CrossChannelLRN.apply(x, size, alpha, beta, k)
