"""Legalization: rewrite a float graph into the structure a hardware target implements.

After `Legalize` every neuron's input is a sum of synapse paths, each with
exactly one weighted op (`npuc.ir.analysis.neuron_paths`), and every neuron
uses only features the target's numeric profile lists; anything that cannot
be made so raises `PassError` naming the node, unless the user allowed
approximations (then each approximation is a named warning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Ref
from ..ir.analysis import WEIGHTED, StructureError, is_population, neuron_paths
from ..ir.ops import (
    LIF,
    Add,
    AvgPool2d,
    Conv2d,
    Dense,
    Input,
    LinearAttention,
    MaxPool2d,
    Output,
    Scale,
    SpikeAttention,
    StochasticAttention,
    SumPool2d,
)
from .base import Pass, PassContext, PassError
from .fold import FoldScale, canonical


@dataclass(frozen=True)
class Legalize(Pass):
    """Make the graph implementable by the context's target.

    Rewrites (all targets):

    * ``AvgPool2d`` -> ``SumPool2d`` + ``Scale(1 / (kh kw))``, then every
      constant scale is folded into weights or gains (`FoldScale`);
    * a synapse op or Add read by several consumers is duplicated per consumer
      (each neuron scales its own inputs when quantized);
    * a path with no weighted op (input or spikes straight into a neuron)
      gets an identity Dense (1-d / token shapes) or depthwise 1x1 Conv.

    Target-specific (from ``target.profile``):

    * max pooling of binary spikes is kept where the target pools spikes
      (FPGA) and otherwise becomes a sum pool into an OR neuron (fires when the
      count is positive); max pooling of currents is an error everywhere;
    * neuron features the profile lacks: a delayed zero reset becomes a
      same-step reset (identical spikes), other missing features raise, or
      with ``allow_approx`` are approximated with a warning naming the node.
    """

    name = "legalize"

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        prof = ctx.target.profile
        counts = {"avgpool": 0, "duplicated": 0, "identity": 0, "or_neurons": 0, "neurons_changed": 0}
        for node in graph.of_type(AvgPool2d):
            self._split_avgpool(graph, node.name)
            counts["avgpool"] += 1
        counts["or_neurons"] = self._maxpools(graph, ctx)
        graph = FoldScale().apply(graph, ctx)
        counts["duplicated"] = self._duplicate_shared(graph)
        counts["identity"] = self._insert_identities(graph)
        for node in graph.of_type(LIF):
            new = self._neuron(node.name, node.op, ctx)
            if new is not node.op:
                graph.replace_op(node.name, new)
                counts["neurons_changed"] += 1
        if prof.weight_scheme == "loihi":
            for node in graph.of_type(SpikeAttention, StochasticAttention, LinearAttention):
                raise PassError(
                    f"'{node.name}' ({type(node.op).__name__}) has no Loihi 2 process in lava-nc: compile it with "
                    "--target fpga, or split the model and run this part on the host (see docs/lava-backend.md)"
                )
        remaining_scales = [n.name for n in graph.of_type(Scale)]
        if remaining_scales:
            raise PassError(f"scale node(s) {remaining_scales} could not fold into weights or neurons; "
                            f"target '{ctx.target.name}' has no multiplier between layers")
        for node in graph.of_type(LIF):
            try:
                neuron_paths(graph, node.name)
            except StructureError as e:
                raise PassError(str(e)) from None
        self._report(**counts)
        return graph

    # -- pooling -------------------------------------------------------------------
    def _split_avgpool(self, graph: Graph, name: str) -> None:
        op = graph[name].op
        (src,) = graph[name].inputs
        k = op.kernel[0] * op.kernel[1]
        graph.replace_op(name, SumPool2d(op.kernel, op.stride, op.padding))
        sc = graph.add(graph.unique_name(f"{name}.scale"), Scale(np.float32(1.0 / k)), [name])
        graph.redirect(name, sc)

    def _maxpools(self, graph: Graph, ctx: PassContext) -> int:
        prof = ctx.target.profile
        added = 0
        for node in graph.of_type(MaxPool2d):
            src = node.inputs[0]
            if not _binary_spikes(graph, src):
                raise PassError(
                    f"max pool '{node.name}' pools currents from '{src.node}': max is not linear, so it has no "
                    "synapse mapping; pool after the neuron (on spikes) or use average pooling"
                )
            if prof.weight_scheme != "loihi":
                continue  # the FPGA pools spikes by OR-ing addresses
            users = graph.users(node.name)
            graph.replace_op(node.name, SumPool2d(node.op.kernel, node.op.stride, node.op.padding))
            count = graph.add(graph.unique_name(f"{node.name}.count"), _identity_for(graph[node.name].shape), [node.name])
            # OR neuron: fires when the pooled spike count is positive, and never keeps charge
            lif = graph.add(graph.unique_name(f"{node.name}.or"), LIF(alpha=0.0, threshold=0.5, reset="value"), [count])
            for user, idx in users:
                refs = list(graph[user].inputs)
                refs[idx] = Ref(lif, None, refs[idx].delay)
                graph.set_inputs(user, refs)
            added += 1
        return added

    # -- structure -------------------------------------------------------------------
    def _duplicate_shared(self, graph: Graph) -> int:
        """Give every neuron its own copy of shared synapse ops (weighted, post-synaptic, Add)."""
        dup = 0
        changed = True
        while changed:
            changed = False
            for node in list(graph):
                if not _is_current_op(graph, node.name):
                    continue
                users = graph.users(node.name)
                if len(users) <= 1:
                    continue
                for k, (user, idx) in enumerate(users[1:], start=1):
                    copy = graph.add(graph.unique_name(f"{node.name}.dup{k}"), node.op, node.inputs, meta=dict(node.meta))
                    refs = list(graph[user].inputs)
                    refs[idx] = Ref(copy, refs[idx].port, refs[idx].delay)
                    graph.set_inputs(user, refs)
                    dup += 1
                changed = True
                break
        return dup

    def _insert_identities(self, graph: Graph) -> int:
        added = 0
        for node in graph.of_type(LIF):
            (start,) = node.inputs
            heads = [(None, 0, start)]
            if isinstance(graph[start.node].op, Add):
                heads = [(start.node, i, r) for i, r in enumerate(graph[start.node].inputs)]
            for owner, idx, ref in heads:
                if _has_weighted(graph, ref):
                    continue
                src = graph[ref.node]
                shape = src.shapes[src.port(ref)]
                ident = graph.add(graph.unique_name(f"{node.name}.in"), _identity_for(shape), [ref])
                target = owner if owner is not None else node.name
                refs = list(graph[target].inputs)
                refs[idx] = Ref(ident)
                graph.set_inputs(target, refs)
                added += 1
        return added

    # -- neurons -------------------------------------------------------------------
    def _neuron(self, name: str, op: LIF, ctx: PassContext) -> LIF:
        prof = ctx.target.profile
        new = op

        def approx(feature: str, fix: str, **changes) -> None:
            nonlocal new
            if not ctx.allow_approx:
                raise PassError(f"neuron '{name}' uses {feature}, which target '{ctx.target.name}' does not "
                                f"implement; {fix}, or pass --allow-approx to approximate it")
            ctx.warn(f"neuron '{name}': {feature} approximated ({', '.join(f'{k}={v}' for k, v in changes.items())})")
            new = canonical(new, **changes)

        if op.spike not in prof.spike_types:
            raise PassError(f"neuron '{name}' emits {op.spike} spikes; target '{ctx.target.name}' supports {list(prof.spike_types)}")
        if op.reset == "value" and op.reset_timing == "delayed" and "delayed" not in prof.reset_timings:
            new = canonical(new, reset_timing="same")  # same spikes: the old membrane is zeroed either way
        if new.reset not in prof.reset_modes:
            approx(f"{new.reset} reset", "train with reset to a value (e.g. snntorch reset_mechanism='zero')",
                   reset="value", reset_value=0.0)
        if new.reset_timing not in prof.reset_timings:
            approx(f"'{new.reset_timing}' reset timing", "use a same-step reset", reset_timing="same")
        if new.reset == "value" and new.reset_value != 0 and prof.weight_scheme == "loihi":
            approx(f"reset to {new.reset_value}", "reset to 0", reset_value=0.0)
        if new.v_min is not None and prof.weight_scheme == "loihi":
            approx("a lower membrane bound (v_min)", "drop min_v_mem", v_min=None)
        if new.v_init != 0 and prof.weight_scheme == "loihi":
            approx(f"initial membrane {new.v_init}", "start from 0", v_init=0.0)
        return new


def _identity_for(shape: tuple[int, ...]):
    """An identity weighted op: depthwise 1x1 conv for (C, H, W), else a Dense on the last axis."""
    if len(shape) == 3:
        c = shape[0]
        return Conv2d(np.ones((c, 1, 1, 1), np.float32), groups=c)
    return Dense(np.eye(shape[-1], dtype=np.float32))


def _binary_spikes(graph: Graph, ref: Ref) -> bool:
    node = graph[ref.node]
    if isinstance(node.op, LIF):
        return node.port(ref) == "spikes" and node.op.spike == "binary"
    if isinstance(node.op, Input):
        return node.op.encoding.kind in ("rate", "bernoulli", "timecode", "latency")
    if isinstance(node.op, (MaxPool2d,)) or type(node.op).__name__ in ("Reshape", "Permute"):
        return _binary_spikes(graph, node.inputs[0])
    return False


def _is_current_op(graph: Graph, name: str) -> bool:
    """A node carrying synaptic currents (downstream of a weighted op, up to a neuron)."""
    node = graph[name]
    if isinstance(node.op, (Input, LIF, Output)):
        return False
    if isinstance(node.op, WEIGHTED + (Add,)):
        return True
    return any(_is_current_op(graph, r.node) for r in node.inputs)


def _has_weighted(graph: Graph, ref: Ref) -> bool:
    while not is_population(graph, ref):
        node = graph[ref.node]
        if isinstance(node.op, WEIGHTED):
            return True
        if isinstance(node.op, (LIF, Add)) or not node.inputs:
            return False
        ref = node.inputs[0]
    return False
