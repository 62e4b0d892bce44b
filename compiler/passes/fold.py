"""Folding passes: remove batch norms and constant scales by absorbing them into weights or neurons.

Both passes preserve the float semantics up to float rounding (they are exact
in real arithmetic); a neuron whose parameters change switches to the
canonical ``npuc`` float form because its library form's raw parameters no
longer apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NpucError
from ..ir import Graph, ops
from .base import Pass, PassContext, PassError, PassResult


def canonical(op: ops.LIF, **changes) -> ops.LIF:
    """A LIF with changed canonical parameters, evaluated with the canonical float form."""
    return op.replace(form="npuc", form_args={}, **changes)


def _channel_factor(factor: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A per-output-channel vector from a factor broadcastable to ``shape`` (channel axis 0)."""
    f = np.broadcast_to(factor, shape)
    if len(shape) == 1:
        return np.ascontiguousarray(f, dtype=np.float32)
    flat = f.reshape(shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        raise PassError(f"{where}: the factor varies within a channel; it cannot fold into per-channel weights")
    return np.ascontiguousarray(flat[:, 0], dtype=np.float32)


def scale_weighted_outputs(op, factor: np.ndarray):
    """Dense/Conv with each output channel multiplied by ``factor[c]``."""
    f = factor.astype(np.float32)
    w = op.weight * f.reshape((-1,) + (1,) * (op.weight.ndim - 1))
    b = op.bias * f if op.bias is not None else None
    return op.replace(weight=w.astype(np.float32), bias=None if b is None else b.astype(np.float32), q=None)


@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Fold every `BatchNorm` away.

    With ``a = weight / sqrt(var + eps)`` and ``c = bias - mean * a`` per
    channel, a BN right after a Dense/Conv (its only user) becomes
    ``W' = a W``, ``b' = a b + c``. A BN feeding only neurons is folded into
    them by dividing the membrane by ``a`` (requires ``a > 0``): threshold,
    bias, reset value, bounds and initial value scale by ``1/a`` and ``c``
    joins the bias (``b' = (b + gain c) / a``). Afterwards the graph has no
    BatchNorm node; anything else raises `PassError` naming the node.
    """

    name = "fold-batchnorm"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        into_weights = into_neurons = 0
        for node in graph.of_type(ops.BatchNorm):
            bn = node.op
            a = (bn.weight.astype(np.float64) / np.sqrt(bn.var.astype(np.float64) + bn.eps))
            c = bn.bias.astype(np.float64) - bn.mean.astype(np.float64) * a
            (src,) = node.inputs
            prev = graph[src.node]
            users = graph.users(node.name)
            through = _through_layout(graph, src)
            if through is not None:  # Linear -> .transpose(-1, -2) -> BatchNorm1d (Spikformer)
                w = through.op.weight.astype(np.float64) * a.reshape((-1,) + (1,) * (through.op.weight.ndim - 1))
                b = (through.op.bias.astype(np.float64) if through.op.bias is not None else 0.0) * a + c
                graph.replace_op(through.name, through.op.replace(weight=w.astype(np.float32),
                                                                  bias=b.astype(np.float32)))
                graph.bypass(node.name)
                into_weights += 1
            elif prev.op.has_role("foldable") and src.delay == 0 and graph.users(prev.name) == [(node.name, 0)] \
                    and (not isinstance(prev.op, ops.Dense) or len(prev.shape) == 1):
                w = prev.op.weight.astype(np.float64) * a.reshape((-1,) + (1,) * (prev.op.weight.ndim - 1))
                b = (prev.op.bias.astype(np.float64) if prev.op.bias is not None else 0.0) * a + c
                graph.replace_op(prev.name, prev.op.replace(weight=w.astype(np.float32), bias=b.astype(np.float32)))
                graph.bypass(node.name)
                into_weights += 1
            elif users and all(isinstance(graph[u].op, ops.LIF) for u, _ in users):
                if np.any(a <= 0):
                    raise PassError(f"batch norm '{node.name}' has non-positive scale on some channels; "
                                    "it cannot fold into the following neuron's threshold")
                for u, _ in users:
                    lif = graph[u].op
                    if lif.cuba and np.any(c != 0):
                        raise PassError(f"batch norm '{node.name}' shifts the input of CUBA neuron '{u}': "
                                        "a constant current has no exact neuron parameter")
                    shape = (-1,) + (1,) * (len(node.shape) - 1)
                    ar, cr = a.reshape(shape), c.reshape(shape)
                    graph.replace_op(u, _divide_membrane(lif, ar, cr))
                graph.bypass(node.name)
                into_neurons += 1
            else:
                raise PassError(f"batch norm '{node.name}' follows '{src.node}' ({type(prev.op).__name__}) and "
                                "feeds non-neuron ops: it can fold only into a preceding Dense/Conv or following neurons")
        cancelled = cancel_inverse_permutes(graph)
        return PassResult(graph, dict(into_weights=into_weights, into_neurons=into_neurons,
                                      permutes_cancelled=cancelled))


def cancel_inverse_permutes(graph: Graph) -> int:
    """Remove a Permute followed (as its only user) by the inverse Permute: what is left of
    ``bn(x.transpose(-1, -2)).transpose(-1, -2)`` once the batch norm has folded away."""
    done = 0
    for node in graph.of_type(ops.Permute):
        if node.name not in graph:
            continue
        users = graph.users(node.name)
        if len(users) != 1 or not isinstance(graph[users[0][0]].op, ops.Permute):
            continue
        nxt = graph[users[0][0]]
        if nxt.inputs[0].delay != 0 or any(node.op.dims[d] != i for i, d in enumerate(nxt.op.dims)):
            continue
        graph.bypass(nxt.name)
        graph.bypass(node.name)
        done += 1
    return done


def _through_layout(graph: Graph, src) -> object | None:
    """The Dense/Conv whose output channels are the channel axis (axis 0) of ``src`` when
    ``src`` is that op's output moved by single-user Permute/Reshape nodes (``Linear``
    then ``.transpose(-1, -2)``: the batch norm normalises the Linear's output features),
    else None. Reshapes must keep the channel axis whole."""
    axis, ref = 0, src
    while True:
        node = graph[ref.node]
        if ref.delay != 0 or len(graph.users(node.name)) != 1:
            return None
        if isinstance(node.op, ops.Permute):
            axis = node.op.dims[axis]
        elif isinstance(node.op, ops.Reshape):
            axis = _reshape_axis(graph[node.inputs[0].node].shapes[graph[node.inputs[0].node].port(node.inputs[0])],
                                 node.shape, axis)
            if axis is None:
                return None
        elif node.op.has_role("foldable") and node is not graph[src.node]:
            channel = len(node.shape) - 1 if isinstance(node.op, ops.Dense) else 0
            return node if axis == channel else None
        else:
            return None
        ref = node.inputs[0]


def _reshape_axis(in_shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int) -> int | None:
    """The input axis that output axis ``axis`` of a reshape is, if the reshape keeps it whole."""
    before = int(np.prod(out_shape[:axis], dtype=np.int64))
    for i in range(len(in_shape)):
        if int(np.prod(in_shape[:i], dtype=np.int64)) == before and in_shape[i] == out_shape[axis]:
            return i
    return None


def _divide_membrane(lif: ops.LIF, a: np.ndarray, c: np.ndarray) -> ops.LIF:
    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    kw = dict(threshold=f32(lif.threshold / a), bias=f32((lif.bias + lif.gain * c) / a))
    if lif.reset_value != 0 or lif.v_init != 0:
        if a.size > 1 and not np.all(a == a.reshape(-1)[0]):
            raise PassError("a per-channel batch norm cannot fold into a neuron with a nonzero reset value or initial value")
        kw["reset_value"] = float(lif.reset_value / a.reshape(-1)[0])
        kw["v_init"] = float(lif.v_init / a.reshape(-1)[0])
    if lif.threshold_lo is not None:
        kw["threshold_lo"] = f32(lif.threshold_lo / a)
    if lif.v_min is not None:
        kw["v_min"] = f32(lif.v_min / a)
    return canonical(lif, **kw)


_LINEAR_SPIKE_OPS = (ops.Reshape, ops.Permute, ops.SumPool2d, ops.AvgPool2d)


@dataclass(frozen=True)
class FoldScale(Pass):
    """Fold constant `Scale` nodes into weights or neuron gains.

    Rewrites, tried in order for each Scale ``y = f x``:

    1. after a Dense/Conv it is the only user of: ``W' = f W``, ``b' = f b``
       (``f`` per output channel); after a coincidence attention (scalar
       ``f``): ``scale' = f scale``;
    2. feeding only neurons: ``gain' = f gain`` (``f`` broadcast per neuron);
    3. feeding only Dense/Conv ops (scalar ``f``): ``W' = f W`` (bias unchanged);
    4. a scalar ``f > 0`` (or any ``f`` without max pooling) is moved past a
       single-user linear op (Reshape, Permute, Sum/AvgPool, MaxPool) and tried again.

    Scales that fit none of these stay (the FPGA backend implements them as a
    multiply-shift; legalization for other targets reports them).
    """

    name = "fold-scale"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        before = len(graph.of_type(ops.Scale))
        changed = True
        while changed:
            changed = False
            for node in graph.of_type(ops.Scale):
                try:
                    folded = self._fold_one(graph, node.name)
                except NpucError:
                    raise
                except ValueError as e:  # the folded parameters are not valid (e.g. overflow float32)
                    raise PassError(f"scale '{node.name}' (factor {_describe(node.op.factor)}) cannot fold into "
                                    f"its neighbours: {e}; check the model's scale factors") from None
                if folded:
                    changed = True
                    break
        return PassResult(graph, dict(folded=before - len(graph.of_type(ops.Scale)), remaining=len(graph.of_type(ops.Scale))))

    def _fold_one(self, graph: Graph, name: str) -> bool:
        node = graph[name]
        f = node.op.factor.astype(np.float64)
        (src,) = node.inputs
        prev = graph[src.node]
        users = graph.users(name)
        if prev.op.has_role("foldable") and src.delay == 0 and graph.users(prev.name) == [(name, 0)]:
            try:
                fc = _channel_factor(f, prev.shape, f"scale '{name}'")
            except PassError:
                fc = None
            if fc is not None:
                graph.replace_op(prev.name, scale_weighted_outputs(prev.op, fc))
                graph.bypass(name)
                return True
        if isinstance(prev.op, ops.SpikeAttention) and f.size == 1 and src.delay == 0 \
                and graph.users(prev.name) == [(name, 0)]:
            graph.replace_op(prev.name, prev.op.replace(scale=float(prev.op.scale * f.reshape(())), q=None))
            graph.bypass(name)
            return True
        if users and all(isinstance(graph[u].op, ops.LIF) for u, _ in users):
            for u, _ in users:
                lif = graph[u].op
                graph.replace_op(u, canonical(lif, gain=np.asarray(lif.gain * f, dtype=np.float32)))
            graph.bypass(name)
            return True
        if f.size == 1 and users and all(graph[u].op.has_role("foldable") and graph[u].inputs[0].delay == 0 for u, _ in users):
            for u, _ in users:
                op = graph[u].op
                graph.replace_op(u, op.replace(weight=(op.weight * f.reshape(())).astype(np.float32), q=None))
            graph.bypass(name)
            return True
        if f.size == 1 and len(users) == 1:
            (u, _), = users
            nxt = graph[u]
            if isinstance(nxt.op, _LINEAR_SPIKE_OPS + (ops.MaxPool2d,)) and (f > 0 or not isinstance(nxt.op, ops.MaxPool2d)) \
                    and nxt.inputs[0].delay == 0 and src.delay == 0:
                # swap: src -> nxt -> scale -> (users of nxt)
                graph.set_inputs(u, [src])
                graph.set_inputs(name, [u])
                graph.redirect(u, name)
                return True
        return False


def _describe(a: np.ndarray) -> str:
    a = np.asarray(a)
    return f"{float(a.reshape(-1)[0]):.4g}" if a.size == 1 else f"{float(a.min()):.4g}..{float(a.max()):.4g}"


def is_conv(op) -> bool:
    return isinstance(op, (ops.Conv1d, ops.Conv2d))
