"""Readouts: move a reduction over time behind the layers that read it, fold token means,
and give outputs that read synapse currents a neuron to read them through.

The frontend turns ``head(x.mean(0))`` into an integrator (``LIF`` with
``alpha = 1``, no reset, read through its membrane; meta ``time_reduction``)
followed by ``Scale(1/T)``, the head and an output that reads the last step
(`npuc.frontends.reductions`). Hardware cannot feed a membrane into a synapse,
but the layers between the integrator and the output are affine, so in exact
arithmetic ``head(sum_t x_t) = sum_t head'(x_t)`` with every bias divided by
``T``: the integrator moves to just before the output, where it is the usual
membrane readout.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Ref
from ..ir.ops import LIF, Conv1d, Conv2d, Dense, Input, Output, Permute, Reshape, Scale, SumPool2d
from .base import PassError

TIME_REDUCTION = "time_reduction"
_AFFINE = (Scale, Dense, Conv1d, Conv2d, Reshape, Permute)


def commute_time_reductions(graph: Graph) -> int:
    """Rewrite every integrator marked ``time_reduction``; returns how many moved.

    Raises:
        PassError: the integrator feeds something other than a chain of affine ops
            ending in last-step outputs.
    """
    moved = 0
    for node in list(graph.of_type(LIF)):
        if TIME_REDUCTION not in node.meta or node.meta.get("commuted"):
            continue
        steps = int(node.meta["steps"])
        chain, cur = [], node.name
        while True:
            users = graph.users(cur)
            if users and all(isinstance(graph[u].op, Output) and graph[u].op.decoding == "last" for u, _ in users):
                break
            if len(users) != 1 or not isinstance(graph[users[0][0]].op, _AFFINE):
                raise PassError(f"the reduction over time '{node.name}' feeds {[u for u, _ in users]}: only affine "
                                "layers up to a last-step output can read it")
            cur = users[0][0]
            chain.append(cur)
        if not chain:
            continue
        outputs = graph.users(chain[-1])
        (src,) = node.inputs
        graph.set_inputs(chain[0], [src])
        for name in chain:
            op = graph[name].op
            if getattr(op, "bias", None) is not None:
                graph.replace_op(name, op.replace(bias=(op.bias / np.float32(steps)).astype(np.float32)))
        graph.set_inputs(node.name, [Ref(chain[-1])])
        for out, idx in outputs:
            refs = list(graph[out].inputs)
            refs[idx] = Ref(node.name, "v", refs[idx].delay)
            graph.set_inputs(out, refs)
        graph[node.name].meta["commuted"] = True
        moved += 1
    return moved


def fold_token_means(graph: Graph) -> int:
    """Fold the sum pool of a mean over tokens into the layer that reads it:
    ``Dense(W)(Reshape(P)(SumPool2d((n, 1))(x)))`` on ``x`` of shape ``[P, n, 1]`` is
    ``Dense(W')(Reshape(P n)(x))`` with ``W'[o, p n + j] = W[o, p]`` (the same sums, so
    exact; the ``1 / n`` has already folded into ``W``). Like a global average pool
    before the classifier, the pool then costs no hardware (and no second pooling unit on
    a path that already max-pools)."""
    folded = 0
    for node in list(graph.of_type(SumPool2d)):
        src = graph[node.inputs[0].node]
        shape = src.shapes[src.port(node.inputs[0])]
        if len(shape) != 3 or shape[2] != 1 or node.op.kernel != (shape[1], 1) or node.op.stride != (shape[1], 1) \
                or any(node.op.padding) or node.inputs[0].delay != 0:
            continue
        users = graph.users(node.name)
        if len(users) != 1 or not isinstance(graph[users[0][0]].op, Reshape):
            continue
        reshape = graph[users[0][0]]
        p, n = shape[0], shape[1]
        after = graph.users(reshape.name)
        if reshape.shape != (p,) or not after or not all(
                isinstance(graph[u].op, Dense) and graph[u].inputs[0].delay == 0 for u, _ in after):
            continue
        ops = {u: graph[u].op.replace(weight=np.repeat(graph[u].op.weight, n, axis=1).astype(np.float32), q=None)
               for u, _ in after}
        graph.replace_ops({reshape.name: Reshape((p * n,)), **ops}, {reshape.name: [node.inputs[0]]})
        graph.remove(node.name)
        folded += 1
    return folded


CURRENT_READOUT = "current_readout"


def insert_current_readouts(graph: Graph) -> int:
    """Give every output that reads synapse currents (a classifier ``Linear`` whose logits are the
    model's output, as in SpikingJelly's SEW-ResNet; a sum of such layers) a neuron to read them
    through: ``LIF(alpha_i=0, reset="none")`` read through its current ``i``, which is
    ``0 * i_{t-1} + x_t = x_t`` exactly in float, and in integers the layer's accumulated input
    in the neuron's current units (a current decay of zero is exact on every target). Its
    spikes and membrane are never read (``alpha = 0.5`` only keeps the membrane bounded).
    Outputs of neurons and inputs, also through reshapes and permutes, are left alone.
    Marks the new node ``meta["current_readout"]``; returns how many were inserted.
    """
    inserted = 0
    for out in list(graph.of_type(Output)):
        (ref,) = out.inputs
        cur = graph[ref.node]
        while isinstance(cur.op, (Reshape, Permute)):
            cur = graph[cur.inputs[0].node]
        if isinstance(cur.op, (LIF, Input)):
            continue
        name = graph.unique_name(f"{ref.node}_readout")
        graph.add(name, LIF(alpha=0.5, alpha_i=0.0, reset="none"), [Ref(ref.node, ref.port, ref.delay)],
                  meta={CURRENT_READOUT: True})
        graph.set_inputs(out.name, [Ref(name, "i")])
        inserted += 1
    return inserted
