"""Caffe's across-channel LRN, fast and exact, forward and backward.

    y = x * s^-beta,   s = k + alpha/n * sum of x^2 over the n channels centred on each one

PyTorch's `F.local_response_norm` computes the same numbers but spends most of AlexNet's LRN
time in a 3-D average pool and in autograd's generic backward of `pow` and `div` (a fifth of a
fine-tuning step). Here the channel-window sum is a 2-D average pool over an (N, 1, C, H*W)
view (the same additions in the same order), and the backward is Caffe's own closed form
(lrn_layer.cpp, CrossChannelBackward_cpu):

    dx = dy * s^-beta - (2 * alpha * beta / n) * x * window_sum(dy * y / s)

which reuses the forward's s^-beta instead of re-deriving pow. `FACS_LRN=torch` falls back to
`F.local_response_norm` (for comparison).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor


def _window_sum(t: Tensor, size: int) -> Tensor:
    """Sum over `size` neighbouring channels (zero padded) of an (N, C, H, W) tensor."""
    n, c, h, w = t.shape
    half = (size - 1) // 2
    # (N, 1, C, H*W): the channel axis becomes a spatial one, pooled with a (size, 1) window.
    v = t.reshape(n, 1, c, h * w)
    s = F.avg_pool2d(v, (size, 1), stride=1, padding=(half, 0), count_include_pad=True)
    return s.reshape(n, c, h, w) * size


class _CrossChannelLRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        x = x.contiguous()
        scale = _window_sum(x * x, size).mul_(alpha / size).add_(k)
        inv = scale.pow(-beta)
        y = x * inv
        ctx.save_for_backward(x, y, scale, inv)
        ctx.params = (size, alpha, beta)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, y, scale, inv = ctx.saved_tensors
        size, alpha, beta = ctx.params
        dy = dy.contiguous()
        acc = _window_sum(dy * y / scale, size)
        dx = dy * inv - (2.0 * alpha * beta / size) * x * acc
        return dx, None, None, None, None


def cross_channel_lrn(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """Caffe's ACROSS_CHANNELS LRN of an (N, C, H, W) tensor (odd `size`)."""
    if os.environ.get("FACS_LRN") == "torch":
        return F.local_response_norm(x, size, alpha, beta, k)
    return _CrossChannelLRN.apply(x, size, alpha, beta, k)
