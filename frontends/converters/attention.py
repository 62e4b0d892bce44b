"""Spiking attention in traced models: plain-PyTorch Spikformer matmuls and the
`npuc.nn` attention modules -> the IR's inter-token NPEs.

**Plain PyTorch.** A Spikformer block computes, on binary spike tensors Q, K, V
(neuron outputs, possibly reshaped/permuted/transposed into heads)::

    q @ k.transpose(-2, -1) @ v * s          -> SpikeAttention(order="qk_v") + Scale(s)
    (q @ k.transpose(-2, -1)) * s @ v        -> SpikeAttention(order="qk_v", scale=s)
    q @ (k.transpose(-2, -1) @ v) * s        -> SpikeAttention(order="q_kv") + Scale(s)

(``score="and"``; the trailing Scale is moved into the attention's ``scale`` by
the fold-scale pass). The first product of two spike tensors is held as a
`ScoreProduct` until its third operand arrives; anything else done with it
(softmax, a neuron, an addition, indexing, returning it, a product of two
products) fails naming the source line, as does a matrix product whose
operands are not binary spikes. Every float32 value involved is an integer
count times the scale, so the float engine reproduces the user's arithmetic bit
for bit; a scale applied before ``@ v`` must therefore keep those products exact
(a dyadic factor whose odd significand times the largest sum stays below 2^24,
e.g. any power of two), and is refused otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...ir.graph import Graph, Ref
from ...ir.ops import LIF, Input, Op, Permute, Reshape, SpikeAttention, StochasticAttention
from ..builder import Builder
from ..errors import FrontendError, LayoutError
from ..values import LEADS, Sym

EXACT = 1 << 24
"""float32 represents every integer below 2^24 exactly."""


@dataclass(frozen=True)
class ScoreProduct:
    """``left @ right`` of two binary spike tensors, not yet an IR node.

    ``(left @ right) @ v`` becomes coincidence attention with ``Q = left``,
    ``K = right^T``; ``q @ (left @ right)`` one with ``K = left^T``, ``V = right``.
    ``scale`` accumulates constant factors applied in between; ``where`` is the
    source line of the product (for error messages).
    """

    left: Sym
    right: Sym
    scale: float = 1.0
    where: str = ""


def describe_product(p: ScoreProduct) -> str:
    """How error messages name a pending product (with its source line)."""
    return f"the spike-tensor product at {p.where.rstrip(': ') or 'model code'}"


# -- operands -------------------------------------------------------------------------------------


def spike_source(graph: Graph, ref: Ref) -> tuple[str, str]:
    """``(kind, description)`` of what a value is, looking through Reshape/Permute:
    kind ``"spikes"`` (binary spikes of a neuron or a stochastic attention),
    ``"input"`` (a model input: must become a spike train) or ``"other"``."""
    while True:
        node = graph[ref.node]
        op = node.op
        if isinstance(op, (Reshape, Permute)):
            ref = node.inputs[0]
            continue
        if isinstance(op, LIF):
            port = node.port(ref)
            if port == "spikes" and op.spike in ("binary", "bernoulli"):
                return "spikes", f"spikes of neuron '{ref.node}'"
            what = f"the '{port}' port" if port != "spikes" else f"{op.spike} spikes"
            return "other", f"{what} of neuron '{ref.node}'"
        if isinstance(op, StochasticAttention):
            return "spikes", f"spikes of stochastic attention '{ref.node}'"
        if isinstance(op, Input):
            return "input", f"model input '{ref.node}'"
        return "other", f"the output of '{ref.node}' ({type(op).__name__})"


def require_spikes(b: Builder, x: Sym, role: str, what: str) -> None:
    """Fail unless ``x`` carries binary spikes (a neuron's spikes or a model input,
    which `check_inputs` later requires to be a 0/1 spike train)."""
    kind, desc = spike_source(b.graph, x.ref)
    if kind == "other":
        raise b.error(f"{what}: its {role} is {desc}, not binary spikes; spiking attention multiplies 0/1 spike "
                      "tensors (Q, K, V from binary spiking neurons, optionally reshaped, permuted or transposed)")


def _check_matmul_shapes(b: Builder, a: Sym, c: Sym, what: str) -> None:
    if a.lead != c.lead:
        raise b.error(f"{what}: operands with different layouts ({LEADS[a.lead]} and {LEADS[c.lead]})", LayoutError)
    if len(a.shape) < 2 or len(c.shape) != len(a.shape):
        raise b.error(f"{what}: per-sample operand shapes {a.shape} and {c.shape}: spiking attention multiplies "
                      "token matrices [..., N, D] of the same rank (no broadcasting, no batch/time axes)")
    if a.shape[:-2] != c.shape[:-2] or a.shape[-1] != c.shape[-2]:
        raise b.error(f"{what}: shapes {a.shape} @ {c.shape} do not chain (heads must match, no broadcasting)")


def transposed(b: Builder, name: str, x: Sym) -> Sym:
    """``x`` with its last two per-sample axes swapped, reusing the Permute that made
    ``x`` when there is one (``k.transpose(-2, -1)`` gives back ``k``)."""
    n = len(x.shape)
    node = b.graph[x.ref.node]
    if isinstance(node.op, Permute) and x.ref.delay == 0:
        p = list(node.op.dims)
        p[-2], p[-1] = p[-1], p[-2]
        src = node.inputs[0]
        base = x.with_(ref=src, shape=tuple(b.graph[src.node].shapes[b.graph[src.node].port(src)]))
        if p == list(range(n)):
            return base
        dims = tuple(p)
        return b.apply(name, lambda: Permute(dims), base, ("permute", dims))
    dims = tuple(range(n - 2)) + (n - 1, n - 2)
    return b.apply(name, lambda: Permute(dims), x, ("permute", dims))


# -- the pattern ----------------------------------------------------------------------------------


def product(b: Builder, left: Sym, right: Sym) -> ScoreProduct:
    """``left @ right`` of two spike tensors (the first product of an attention)."""
    what = "a matrix product of spiking tensors"
    _check_matmul_shapes(b, left, right, what)
    require_spikes(b, left, "left operand", what)
    require_spikes(b, right, "right operand", what)
    return ScoreProduct(left, right, 1.0, b.where())


def scale_product(b: Builder, p: ScoreProduct, factor: Any) -> ScoreProduct:
    """``p * factor`` for a constant scalar ``factor``."""
    if isinstance(factor, torch.Tensor):
        if factor.numel() != 1 or not factor.is_floating_point() and factor.dtype not in (torch.int32, torch.int64):
            raise b.error(f"{describe_product(p)} is multiplied by a tensor of shape {list(factor.shape)}; "
                          "only a scalar factor can become the attention's scale")
        factor = float(factor.reshape(()).item())
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise b.error(f"{describe_product(p)} is multiplied by {type(factor).__name__}; only a constant scalar "
                      "can become the attention's scale")
    f = float(factor)
    if float(np.float32(f)) != f:
        raise b.error(f"{describe_product(p)} is multiplied by {f!r}, which float32 cannot represent: the "
                      "scores would be rounded; multiply after '@ v' (or use a power of two such as 0.125)")
    return ScoreProduct(p.left, p.right, p.scale * f, p.where)


def _odd_significand(x: float) -> int:
    m, _ = np.frexp(np.float64(x))
    q = int(abs(m) * 2**53)
    while q and q % 2 == 0:
        q //= 2
    return q


def complete(b: Builder, name: str, p: ScoreProduct, other: Sym, order: str) -> Sym:
    """Close an attention: ``p @ other`` (``order="qk_v"``) or ``other @ p`` (``"q_kv"``)."""
    what = "spiking attention"
    if order == "qk_v":  # (left @ right) @ other: Q = left, K = right^T, V = other
        q, kt, v = p.left, p.right, other
        got = (*p.left.shape[:-1], p.right.shape[-1])
        ok = len(other.shape) == len(got) and other.shape[:-2] == got[:-2] and other.shape[-2] == got[-1]
        role = "value operand"
    else:  # other @ (left @ right): Q = other, K = left^T, V = right
        q, kt, v = other, p.left, p.right
        got = (*p.left.shape[:-1], p.right.shape[-1])
        ok = len(other.shape) == len(got) and other.shape[:-2] == got[:-2] and other.shape[-1] == got[-2]
        role = "query operand"
    if other.lead != p.left.lead:
        raise b.error(f"{what}: operands with different layouts ({LEADS[other.lead]} and {LEADS[p.left.lead]})",
                      LayoutError)
    if not ok:
        shapes = f"{got} @ {other.shape}" if order == "qk_v" else f"{other.shape} @ {got}"
        raise b.error(f"{what}: per-sample shapes {shapes} do not chain (heads must match, no broadcasting)")
    require_spikes(b, other, role, what)
    k = transposed(b, f"{name}.k", kt)
    d, m = q.shape[-1], k.shape[-2]
    scale = p.scale
    if scale != 1.0 and d * m * _odd_significand(scale) >= EXACT:
        raise b.error(f"{what}: the scale {scale!r} is applied to the scores before '@ v'; with {d} features and "
                      f"{m} keys its products are not exact in float32, so they depend on the evaluation order. "
                      "Multiply after '@ v' or use a power of two (e.g. 0.125)")
    if d * m >= EXACT:
        raise b.error(f"{what}: {d} features x {m} keys reach 2^24, beyond float32's exact integers")
    op_factory: Callable[[], Op] = lambda: SpikeAttention(score="and", scale=scale, order=order)  # noqa: E731
    return b.combine(name, op_factory, [q, k, v], ("spike_attention", order, scale))


# -- after conversion ---------------------------------------------------------------------------------


def check_inputs(graph: Graph) -> None:
    """Every model input that feeds a spike-consuming attention directly must be a spike train.

    Raises:
        FrontendError: naming the input and the attention node.
    """
    for node in graph.of_type(SpikeAttention, StochasticAttention):
        for role, ref in zip(("Q", "K", "V"), node.inputs):
            kind, desc = spike_source(graph, ref)
            src = ref
            while isinstance(graph[src.node].op, (Reshape, Permute)):
                src = graph[src.node].inputs[0]
            if kind == "input" and graph[src.node].op.encoding.kind == "current":
                raise FrontendError(
                    f"{desc} is the {role} of attention '{node.name}' but is not a spike train (its example values "
                    "are not all 0/1, or it is a static input): attention needs binary spikes"
                )
            if kind == "other":
                raise FrontendError(f"{desc} is the {role} of attention '{node.name}', not binary spikes")


def prune_shape_ops(graph: Graph) -> None:
    """Remove Reshape/Permute nodes nobody reads (left behind by ``k.transpose(-2, -1)``
    once the attention reads ``k`` itself)."""
    changed = True
    while changed:
        changed = False
        for node in list(graph):
            if isinstance(node.op, (Reshape, Permute)) and not graph.users(node.name):
                graph.remove(node.name)
                changed = True
