"""Caffe's learning-rate policies and SGD update rules on plain tensors (no net needed)."""

from __future__ import annotations

import math

import torch

from facs.errors import FacsError

POLICIES = ("fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid")


def check_policy(sp, what: str) -> None:
    """FacsError naming `what` (the solver file) if the lr_policy lacks a parameter it needs."""
    policy = sp.lr_policy or "fixed"
    if policy not in POLICIES:
        raise FacsError(f"{what}: unknown lr_policy '{policy}' (known: {', '.join(POLICIES)})")
    needs = {
        "step": ("gamma", "stepsize"),
        "multistep": ("gamma",),
        "exp": ("gamma",),
        "inv": ("gamma", "power"),
        "poly": ("power",),
        "sigmoid": ("gamma", "stepsize"),
    }.get(policy, ())
    for field in needs:
        if not sp.HasField(field):
            raise FacsError(f"{what}: lr_policy '{policy}' needs '{field}'")
    if policy in ("step", "sigmoid") and sp.stepsize <= 0:
        raise FacsError(f"{what}: stepsize must be positive")
    if policy == "poly" and sp.max_iter <= 0:
        raise FacsError(f"{what}: lr_policy 'poly' needs a positive max_iter")


def current_step(sp, it: int) -> int:
    """How many multistep stepvalues the iteration has passed (Caffe's current_step_)."""
    return sum(1 for v in sp.stepvalue if it >= v)


def learning_rate(sp, it: int) -> float:
    """Caffe's SGDSolver::GetLearningRate for iteration `it` (float64 arithmetic, as Caffe)."""
    policy = sp.lr_policy or "fixed"
    base = float(sp.base_lr)
    gamma, power = float(sp.gamma), float(sp.power)
    if policy == "fixed":
        return base
    if policy == "step":
        return base * gamma ** (it // sp.stepsize)
    if policy == "multistep":
        return base * gamma ** current_step(sp, it)
    if policy == "exp":
        return base * gamma**it
    if policy == "inv":
        return base * (1.0 + gamma * it) ** (-power)
    if policy == "poly":
        return base * (1.0 - it / float(sp.max_iter)) ** power
    if policy == "sigmoid":
        return base * (1.0 / (1.0 + math.exp(-gamma * (it - sp.stepsize))))
    raise FacsError(f"unknown lr_policy '{policy}'")


@torch.no_grad()
def clip_gradients(grads: list[torch.Tensor], clip: float) -> float | None:
    """Scale all gradients down together if their joint L2 norm exceeds `clip` (Caffe).

    Returns the scale factor applied, or None when nothing was scaled."""
    if clip < 0 or not grads:
        return None
    norm = math.sqrt(sum(float(torch.sum(g.double() * g.double())) for g in grads))
    if norm <= clip:
        return None
    factor = clip / norm
    for g in grads:
        g.mul_(factor)
    return factor


@torch.no_grad()
def sgd_step(
    w: torch.Tensor,
    grad: torch.Tensor,
    history: torch.Tensor,
    local_lr: float,
    momentum: float,
    local_decay: float,
    regularization: str = "L2",
    nesterov: bool = False,
) -> None:
    """One Caffe update of one blob, in place.

    SGD:      V = momentum*V + local_lr*(grad + local_decay*W);  W -= V
    Nesterov: V' = momentum*V + local_lr*g;  W -= (1+momentum)*V' - momentum*V
    `grad` is modified (regularisation is added to it, as Caffe adds it to the diff).
    """
    if local_decay != 0:
        if regularization == "L2":
            grad.add_(w, alpha=local_decay)
        elif regularization == "L1":
            grad.add_(torch.sign(w), alpha=local_decay)
        else:
            raise FacsError(f"unknown regularization_type '{regularization}'")
    if nesterov:
        old = history.clone()
        history.mul_(momentum).add_(grad, alpha=local_lr)
        w.sub_(history * (1.0 + momentum) - old * momentum)
        return
    # Caffe's caffe_cpu_axpby: history = momentum*history, then history += local_lr*diff.
    history.mul_(momentum).add_(grad, alpha=local_lr)
    w.sub_(history)
