"""Synapse ops: weighted sums, pooling, residual add, scaling, batch norm.

All ops act per sample and per time step: with ``x_t`` the input at step t,
the output at step t depends only on ``x_t`` (no state). Shapes are per sample
(channels first), as in PyTorch without the batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..values import QScale, QSynapse
from .base import Op, Shape, as_array, check_int, freeze, int_tuple


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check_q_weight(op: Op, weight: np.ndarray) -> None:
    q = op.q  # type: ignore[attr-defined]
    if q is not None and q.weight.shape != weight.shape:
        raise ValueError(f"field 'q.weight': shape {q.weight.shape} differs from weight {weight.shape}")


@dataclass(frozen=True, eq=False)
class Dense(Op):
    """Fully connected synapses on the last axis: ``y_t = W x_t + b``.

    ``weight`` is ``[out, in]``; input shape ``(..., in)`` gives ``(..., out)``
    (leading axes such as tokens are kept, as in ``torch.nn.Linear``).
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    q: QSynapse | None = None

    kind = "synapse"
    roles = frozenset({"weighted", "foldable"})

    def __post_init__(self) -> None:
        freeze(self, weight=as_array(self.weight, "weight", ndim=2))
        if self.bias is not None:
            freeze(self, bias=as_array(self.bias, "bias", ndim=1))
            if self.bias.shape[0] != self.weight.shape[0]:
                raise ValueError(f"field 'bias': {self.bias.shape[0]} values for {self.weight.shape[0]} outputs")
        _check_q_weight(self, self.weight)

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        if s[-1] != self.weight.shape[1]:
            raise ValueError(f"input has {s[-1]} features on its last axis, weight expects {self.weight.shape[1]}")
        return {"out": (*s[:-1], self.weight.shape[0])}


@dataclass(frozen=True, eq=False)
class _Conv(Op):
    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, ...] = 1  # type: ignore[assignment]
    padding: tuple[int, ...] = 0  # type: ignore[assignment]
    dilation: tuple[int, ...] = 1  # type: ignore[assignment]
    groups: int = 1
    q: QSynapse | None = None

    kind = "synapse"
    roles = frozenset({"weighted", "foldable"})
    nd = 2

    def __post_init__(self) -> None:
        nd = self.nd
        freeze(self, weight=as_array(self.weight, "weight", ndim=nd + 2))
        freeze(
            self,
            stride=int_tuple(self.stride, "stride", nd, lo=1),
            padding=int_tuple(self.padding, "padding", nd, lo=0),
            dilation=int_tuple(self.dilation, "dilation", nd, lo=1),
        )
        check_int(self.groups, "groups", 1)
        if self.weight.shape[0] % self.groups:
            raise ValueError(f"field 'groups': {self.weight.shape[0]} output channels not divisible by {self.groups}")
        if self.bias is not None:
            freeze(self, bias=as_array(self.bias, "bias", ndim=1))
            if self.bias.shape[0] != self.weight.shape[0]:
                raise ValueError(f"field 'bias': {self.bias.shape[0]} values for {self.weight.shape[0]} channels")
        _check_q_weight(self, self.weight)

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        if len(s) != self.nd + 1:
            raise ValueError(f"expected a (C, {'H, W' if self.nd == 2 else 'L'}) input, got shape {s}")
        cin = self.weight.shape[1] * self.groups
        if s[0] != cin:
            raise ValueError(f"input has {s[0]} channels, weight expects {cin} ({self.groups} groups)")
        out = [
            _conv_out(n, k, st, p, d)
            for n, k, st, p, d in zip(s[1:], self.kernel, self.stride, self.padding, self.dilation)
        ]
        if min(out) < 1:
            raise ValueError(f"kernel {self.kernel} does not fit input {s[1:]} with padding {self.padding}")
        return {"out": (self.weight.shape[0], *out)}


@dataclass(frozen=True, eq=False)
class Conv2d(_Conv):
    """2-d convolution (cross-correlation, as ``torch.nn.Conv2d``):
    ``y[o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] x[g(o) + c, s*i + d*u - p, s*j + d*v - p]``.
    ``weight`` is ``[out, in/groups, kh, kw]``; input ``(C, H, W)``.
    """

    nd = 2


@dataclass(frozen=True, eq=False)
class Conv1d(_Conv):
    """1-d convolution as ``torch.nn.Conv1d``; ``weight`` is ``[out, in/groups, k]``, input ``(C, L)``."""

    nd = 1


@dataclass(frozen=True, eq=False)
class _Pool2d(Op):
    kernel: tuple[int, int] = 2  # type: ignore[assignment]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = 0  # type: ignore[assignment]

    kind = "synapse"
    roles = frozenset({"path"})

    def __post_init__(self) -> None:
        k = int_tuple(self.kernel, "kernel", 2, lo=1)
        freeze(self, kernel=k, stride=int_tuple(self.stride if self.stride is not None else k, "stride", 2, lo=1))
        freeze(self, padding=int_tuple(self.padding, "padding", 2, lo=0))
        if any(2 * p > kk for p, kk in zip(self.padding, k)):
            raise ValueError(f"field 'padding': {self.padding} is more than half the kernel {k}")

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        if len(s) != 3:
            raise ValueError(f"expected a (C, H, W) input, got shape {s}")
        out = [_conv_out(n, k, st, p, 1) for n, k, st, p in zip(s[1:], self.kernel, self.stride, self.padding)]
        if min(out) < 1:
            raise ValueError(f"pool kernel {self.kernel} does not fit input {s[1:]}")
        return {"out": (s[0], *out)}


@dataclass(frozen=True, eq=False)
class SumPool2d(_Pool2d):
    """Sum pooling: ``y[c, i, j] = sum_{u, v} x[c, s*i + u - p, s*j + v - p]`` (zero padding)."""


@dataclass(frozen=True, eq=False)
class AvgPool2d(_Pool2d):
    """Average pooling as ``torch.nn.AvgPool2d`` (``count_include_pad=True``):
    the sum pool divided by ``kh * kw``. Integer form: sum, then ``q`` (multiply-shift)."""

    q: QScale | None = None


@dataclass(frozen=True, eq=False)
class MaxPool2d(_Pool2d):
    """Max pooling as ``torch.nn.MaxPool2d`` (padding with -inf). On binary spikes it is an OR."""


@dataclass(frozen=True, eq=False)
class Add(Op):
    """Element-wise sum of two or more inputs of equal shape (residual connections)."""

    arity = None
    kind = "synapse"
    partial_infer = True

    def infer(self, in_shapes: Sequence[Shape | None]) -> dict[str, Shape]:
        if len(in_shapes) < 2:
            raise ValueError("Add needs at least two inputs")
        known = [tuple(s) for s in in_shapes if s is not None]
        if any(s != known[0] for s in known):
            raise ValueError(f"Add inputs differ in shape: {known}")
        return {"out": known[0]}


@dataclass(frozen=True, eq=False)
class Scale(Op):
    """Multiplication by a constant: ``y = x * factor`` (``factor`` scalar or
    broadcastable to the per-sample shape, e.g. per channel ``(C, 1, 1)``).
    Integer form ``q``: ``y = (x * mult) >> shift``."""

    factor: np.ndarray = 1.0  # type: ignore[assignment]
    q: QScale | None = None

    kind = "synapse"
    roles = frozenset({"path"})

    def __post_init__(self) -> None:
        freeze(self, factor=as_array(self.factor, "factor"))

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        try:
            out = np.broadcast_shapes(self.factor.shape, tuple(s))
        except ValueError:
            raise ValueError(f"factor of shape {self.factor.shape} does not broadcast to input {s}") from None
        if out != tuple(s):
            raise ValueError(f"factor of shape {self.factor.shape} would enlarge input {s}")
        return {"out": tuple(s)}


@dataclass(frozen=True, eq=False)
class BatchNorm(Op):
    """Batch normalisation in eval mode over the channel axis (axis 0 per sample):
    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, computed as
    ``torch.nn.functional.batch_norm``. Folded away by the ``fold-batchnorm`` pass."""

    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5

    kind = "synapse"
    roles = frozenset({"path"})

    def __post_init__(self) -> None:
        for name in ("mean", "var", "weight", "bias"):
            freeze(self, **{name: as_array(getattr(self, name), name, ndim=1)})
        n = self.mean.shape[0]
        if any(getattr(self, k).shape[0] != n for k in ("var", "weight", "bias")):
            raise ValueError("mean, var, weight and bias must have one value per channel")
        if np.any(self.var < 0):
            raise ValueError("field 'var': negative variance")
        if not self.eps > 0:
            raise ValueError("field 'eps': must be positive")

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        if s[0] != self.mean.shape[0]:
            raise ValueError(f"input has {s[0]} channels, batch norm has {self.mean.shape[0]}")
        return {"out": tuple(s)}
