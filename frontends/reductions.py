"""Means the Spikformer family computes on integer-valued spike tensors.

* A mean over one per-sample axis (``x.mean(2)`` of ``[T, B, N, C]`` tokens, or
  ``x.flatten(3).mean(3)`` of ``[T, B, C, H*W]``): the axis is moved last and
  averaged by an `AvgPool2d` over ``[P, n, 1]``, which the compiler folds into the
  next weighted layer like a global average pool. PyTorch's mean is
  ``sum / n`` (measured: equal to ``avg_pool2d`` bit for bit, and not always to
  ``sum * (1 / n)``); the sum is exact because the values are integers (spikes,
  residual sums of spikes, pooled spikes), so the pool reproduces it exactly. A
  mean of currents would depend on the summation order, and is refused.
* A reduction over time consumed by a layer (``head(x.mean(0))``): an integrator
  (LIF with ``alpha = 1`` and no reset, read through its membrane) and a scale
  ``1 / T``; its value is the mean at the last step, so everything after it runs
  up to the output, which reads the last step. The compiler moves the integrator
  after the layers (``head`` is affine), where it becomes the usual membrane
  readout. Exact when the per-step values are integers or integer multiples of a
  power of two (token means over ``2^k`` tokens) and ``T`` is a power of two.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Ref
from ..ir.ops import LIF, Add, AvgPool2d, MaxPool2d, Permute, Reshape, Scale, SumPool2d
from .builder import Builder
from .values import LEADS, Sym

TIME_REDUCTION = "time_reduction"
"""Meta key of the integrator a reduction over time becomes (value: ``"mean"``/``"sum"``)."""

_SHAPE_OPS = (Reshape, Permute, MaxPool2d, SumPool2d)


def integer_valued(graph: Graph, ref: Ref) -> bool:
    """Whether every value of ``ref`` is an integer: spikes of a binary, ternary or
    multi-level neuron, sums of such values, or reshapes/permutes/max and sum pools of them."""
    node = graph[ref.node]
    op = node.op
    if isinstance(op, LIF):
        return node.port(ref) == "spikes" and op.spike in ("binary", "ternary", "multilevel")
    if isinstance(op, Add):
        return all(integer_valued(graph, r) for r in node.inputs)
    if isinstance(op, _SHAPE_OPS):
        return integer_valued(graph, node.inputs[0])
    return False


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def dyadic_valued(graph: Graph, ref: Ref) -> bool:
    """Integer-valued, or an average pool of such values over a power-of-two window
    (every value an integer multiple of ``2^-k``), possibly reshaped."""
    node = graph[ref.node]
    if isinstance(node.op, (Reshape, Permute)):
        return dyadic_valued(graph, node.inputs[0])
    if isinstance(node.op, AvgPool2d) and _power_of_two(int(np.prod(node.op.kernel))):
        return integer_valued(graph, node.inputs[0])
    return integer_valued(graph, ref)


def axis_mean(b: Builder, name: str, x: Sym, axis: int, out_shape: tuple[int, ...]) -> Sym:
    """``x.mean(d)`` over per-sample axis ``axis`` (``d = axis + len(x.lead)``) of an integer-valued
    tensor; ``out_shape`` is the full shape PyTorch computed (leading axes included, keepdim or not)."""
    if not integer_valued(b.graph, x.ref):
        raise b.error(f"mean over dim {axis + len(x.lead)} of a {LEADS[x.lead]} tensor: supported of spikes or sums "
                      "of spikes (e.g. Spikformer's token mean x.mean(2)), whose sums are exact; a mean of currents "
                      "depends on the summation order")
    shape = x.shape
    n = shape[axis]
    rest = tuple(d for i, d in enumerate(shape) if i != axis)
    y = x
    if axis != len(shape) - 1:
        dims = tuple(i for i in range(len(shape)) if i != axis) + (axis,)
        y = b.apply(name + ".permute", lambda: Permute(dims), y, ("permute", dims))
    p = int(np.prod(rest, dtype=np.int64))
    y = b.apply(name + ".rows", lambda: Reshape((p, n, 1)), y, ("reshape", (p, n, 1)))
    y = b.apply(name + ".pool", lambda: AvgPool2d((n, 1), (n, 1), 0), y, ("axis_mean", n),
                meta={"source": f"mean over axis {axis}"})
    return b.reshape(name, y, out_shape)


def time_reduction(b: Builder, name: str, x: Sym) -> Sym:
    """A reduction over time (``x.decode`` is ``"mean"``/``"sum"``) consumed by a layer:
    the running sum (an integrator) times ``1 / T`` (see the module docstring)."""
    kind = x.decode
    steps = b.seq_len
    if steps is None:
        raise b.error(f"a {kind} over time feeds a layer, but the model's number of time steps is unknown")
    if not dyadic_valued(b.graph, x.ref):
        raise b.error(f"a {kind} over time feeds a layer: supported of spikes, sums of spikes or their token means "
                      "(exact in float32); of currents, return the per-step values and reduce over time outside, "
                      "or make the reduction the model's output")
    if kind == "mean" and not _power_of_two(steps):
        raise b.error(f"a mean over {steps} time steps feeds a layer: x.mean(0) rounds differently from a running "
                      "sum times 1/T unless T is a power of two; use 2^k steps or return the mean as the output")
    node = b.add(name, LIF(alpha=1.0, gain=1.0, reset="none"), [x.ref], meta={TIME_REDUCTION: kind, "steps": steps})
    y = x.with_(ref=Ref(node, "v"), decode=None, step=None, lead=("B",))
    if kind == "mean":
        f = np.float32(1.0 / steps)
        y = b.apply(name + ".scale", lambda: Scale(f), y, ("scale", (), f.tobytes()))
    return y


def check_time_reductions(graph: Graph) -> None:
    """A materialized reduction over time is valid at the last step only: only stateless ops
    may follow it, up to outputs that read the last step.

    Raises:
        FrontendError: naming the integrator and the offending consumer.
    """
    from ..ir.ops import Output
    from .errors import FrontendError

    for node in graph:
        if TIME_REDUCTION not in (node.meta or {}):
            continue
        seen, todo = set(), [node.name]
        while todo:
            cur = todo.pop()
            for u, _ in graph.users(cur):
                if u in seen:
                    continue
                seen.add(u)
                op = graph[u].op
                if getattr(op, "stateful", False) or (isinstance(op, Output) and op.decoding != "last"):
                    raise FrontendError(
                        f"the {node.meta[TIME_REDUCTION]} over time '{node.name}' feeds '{u}' ({type(op).__name__}); "
                        "a reduction over time may only feed stateless layers up to the model's output "
                        "(e.g. head(x.mean(0)))")
                todo.append(u)
