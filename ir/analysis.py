"""Structural queries on graphs: which synapse paths feed each neuron population.

Hardware sees a spiking network as *populations* (neuron nodes and inputs)
connected by *synapse paths*. A path runs from a source (an `Input` node or a
neuron's ``spikes`` port) through pre-synaptic ops that only move or pool
spikes (ops with the ``path`` role: `Reshape`, `Permute`, pools, `Scale`), at most
one ``weighted`` op (`Dense`, `Conv1d`, `Conv2d`, `SpikeAttention`), then ``path`` ops
on currents, and possibly an `Add` that sums several paths into one neuron input.
Populations are ops with the ``population`` role. Roles are class attributes of
the ops (`npuc.ir.ops.base.ROLES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import StructureError  # noqa: F401  (re-exported)
from .graph import Graph, Ref
from .ops import LIF, Add, Output, SpikeAttention


@dataclass
class SynapsePath:
    """One path into a neuron population.

    ``source`` is the population ref the path reads; ``pre`` lists the ops
    between the source and the weighted op (source side first); ``weighted``
    is the Dense/Conv node (None for a direct connection); ``post`` lists the
    ops between the weighted op and the neuron (weighted side first).
    ``delay`` is the total edge delay along the path (1 for recurrence);
    ``post_delay`` the part of it after the weighted op: a delayed current is
    zero on the first step, the weighted op's bias included.
    ``inputs`` lists ``(source, pre)`` for every input of the weighted op
    (three for attention; ``source``/``pre`` are the first).
    """

    source: Ref
    pre: list[str] = field(default_factory=list)
    weighted: str | None = None
    post: list[str] = field(default_factory=list)
    delay: int = 0
    inputs: list[tuple[Ref, list[str]]] = field(default_factory=list)
    post_delay: int = 0

    @property
    def nodes(self) -> list[str]:
        return self.pre + ([self.weighted] if self.weighted else []) + self.post


def is_population(graph: Graph, ref: Ref) -> bool:
    node = graph[ref.node]
    if isinstance(node.op, LIF):
        return node.port(ref) == "spikes"
    return node.op.has_role("population")


def spikes_read(graph: Graph, name: str) -> bool:
    """Whether any node (an Output included) reads the ``spikes`` port of neuron ``name``."""
    node = graph[name]
    return any(node.port(graph[u].inputs[i]) == "spikes" for u, i in graph.users(name))


def neuron_paths(graph: Graph, neuron: str) -> list[SynapsePath]:
    """The synapse paths feeding ``neuron`` (an `LIF` node), in input order.

    Raises:
        StructureError: a path with two weighted ops in a row, an op that is
            neither synaptic nor a shape op, or a membrane (``v``/``i`` port)
            feeding another neuron.
    """
    lif = graph[neuron]
    out: list[SynapsePath] = []
    (start,) = lif.inputs
    heads = _expand_add(graph, start)
    for ref, delay in heads:
        out.append(_walk(graph, neuron, ref, delay))
    return out


def _expand_add(graph: Graph, ref: Ref) -> list[tuple[Ref, int]]:
    node = graph[ref.node]
    if isinstance(node.op, Add):
        items: list[tuple[Ref, int]] = []
        for r in node.inputs:
            items += [(rr, d + ref.delay) for rr, d in _expand_add(graph, r)]
        return items
    return [(ref, 0)]


def _walk(graph: Graph, neuron: str, ref: Ref, delay: int) -> SynapsePath:
    post: list[str] = []
    pre: list[str] = []
    weighted: str | None = None
    post_delay = 0
    while True:
        delay += ref.delay
        if is_population(graph, ref):
            path = SynapsePath(Ref(ref.node, ref.port, 0), list(reversed(pre)), weighted, list(reversed(post)), delay,
                               post_delay=post_delay if weighted is not None else 0)
            path.inputs = [(path.source, path.pre)]
            return path
        node = graph[ref.node]
        op = node.op
        if isinstance(op, SpikeAttention):
            if weighted is not None:
                raise StructureError(f"attention '{ref.node}' feeds weighted op '{weighted}' directly (path into '{neuron}')")
            ins = []
            for r in node.inputs:
                sub = _walk(graph, neuron, r, 0)
                if sub.weighted is not None:
                    raise StructureError(f"input '{r.node}' of attention '{ref.node}' carries currents, not spikes")
                ins.append((sub.source, sub.pre))
            path = SynapsePath(ins[0][0], ins[0][1], ref.node, list(reversed(post)), delay)
            path.inputs = ins
            return path
        if isinstance(op, LIF):
            raise StructureError(
                f"the membrane port '{node.port(ref)}' of neuron '{ref.node}' feeds neuron '{neuron}': "
                "only spikes travel between neuron populations in hardware"
            )
        if op.has_role("weighted"):
            if weighted is not None:
                raise StructureError(
                    f"weighted ops '{ref.node}' and '{weighted}' follow each other without a neuron between "
                    f"them (path into '{neuron}'): fold them into one layer or add a neuron"
                )
            weighted = ref.node
            post_delay = delay  # walking backwards: the delays seen so far follow the weighted op
        elif isinstance(op, Add):
            raise StructureError(
                f"'{ref.node}' adds currents before a weighted op on the path into '{neuron}': no hardware mapping"
            )
        elif op.has_role("path"):
            # walking backwards from the neuron: ops seen before the weighted op are post-synaptic
            (pre if weighted is not None else post).append(ref.node)
        elif isinstance(op, Output):
            raise StructureError(f"output '{ref.node}' used as an input")
        else:
            raise StructureError(
                f"'{ref.node}' ({type(op).__name__}) on the path into neuron '{neuron}' has no synapse mapping"
            )
        (ref,) = node.inputs


def populations(graph: Graph) -> list[str]:
    """Names of populations (inputs, neurons, attention units) in topological order."""
    return [n for n in graph.topo_order() if graph[n].op.has_role("population")]
