"""Surrogate gradients: exact spike functions forward, smooth derivatives backward.

The forward of every spike function here is the same comparison the IR's
canonical ("npuc") float form uses, so a trained model's forward equals the
float engine bit for bit; only the backward pass is approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Surrogate:
    """Base class: ``grad(u)`` is the pseudo-derivative of ``H(u)`` at ``u = h - theta``."""

    def grad(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """``d/du sigmoid(slope * u) = slope * s * (1 - s)`` (SuperSpike-like, snntorch ``fast_sigmoid`` style)."""

    slope: float = 5.0

    def grad(self, u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.slope * u)
        return self.slope * s * (1 - s)


@dataclass(frozen=True)
class ATan(Surrogate):
    """``d/du (1/pi) atan(pi/2 * alpha * u) = alpha / 2 / (1 + (pi/2 * alpha * u)^2)`` (snntorch's default)."""

    alpha: float = 2.0

    def grad(self, u: torch.Tensor) -> torch.Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * u) ** 2)


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """Gradient 1 inside ``|u| < width / 2``, else 0."""

    width: float = 1.0

    def grad(self, u: torch.Tensor) -> torch.Tensor:
        return (u.abs() < self.width / 2).to(u.dtype)


class _Spike(torch.autograd.Function):
    """``forward: mask`` (given, exact); ``backward: grad_out * surrogate(u)``."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, out: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate.grad(u), None, None


def spike(u: torch.Tensor, out: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """Return ``out`` (the exact forward, computed by the caller without gradient)
    with the gradient ``surrogate.grad(u)`` with respect to ``u``."""
    return _Spike.apply(u, out.detach(), surrogate)
