"""The npuc graph: named nodes holding ops, connected by (possibly delayed) edges.

Topology lives in a `networkx.MultiDiGraph` kept beside an ordered node table;
the graph is the only mutable object of the IR (ops and values are frozen).

Time: every node produces one value per time step. An edge with ``delay=1``
delivers its source's value from the previous step (zero at step 0); such
edges are the only ones allowed to close a cycle (recurrent connections).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..errors import GraphError  # noqa: F401  (re-exported)
from ..limits import check_steps
from .ops import LIF, Input, Op, Output, Shape
from .values import NumericProfile

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$")


@dataclass(frozen=True)
class Ref:
    """An edge source: ``node``'s output ``port`` (``None`` = its first port),
    ``delay`` steps late (0 = same step, 1 = previous step)."""

    node: str
    port: str | None = None
    delay: int = 0

    def __str__(self) -> str:
        s = self.node if self.port is None else f"{self.node}.{self.port}"
        return s + (f"@t-{self.delay}" if self.delay else "")


RefLike = str | Ref | tuple


def as_ref(r: RefLike) -> Ref:
    if isinstance(r, Ref):
        return r
    if isinstance(r, str):
        return Ref(r)
    return Ref(*r)


@dataclass
class Node:
    """A named op in the graph. ``meta`` holds what passes learn (rates, core, position)."""

    name: str
    op: Op
    inputs: tuple[Ref, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def shape(self) -> Shape:
        """Shape of the default (first) output port."""
        return self.shapes[self.op.ports[0]]

    def port(self, ref: Ref) -> str:
        return ref.port if ref.port is not None else self.op.ports[0]


class Graph:
    """A mutable graph of NPE nodes.

    Args:
        name: graph name (used for generated file and module names).
        num_steps: time steps per sample ``T`` for static inputs; ``None`` when
            every input carries its own time axis.
    """

    def __init__(self, name: str = "net", num_steps: int | None = None) -> None:
        self.name = name
        self.num_steps = num_steps
        self.profile: NumericProfile | None = None
        self.meta: dict[str, Any] = {}
        self._nodes: dict[str, Node] = {}
        self._nx = nx.MultiDiGraph()

    # -- construction ------------------------------------------------------
    def add(self, name: str, op: Op, inputs: Sequence[RefLike] = (), meta: dict | None = None) -> str:
        """Add a node and return its name.

        Inputs may be names, ``(name, port)`` / ``(name, port, delay)`` tuples or
        `Ref` objects. A delayed input may name a node that is added later.

        Raises:
            GraphError: duplicate or malformed name, wrong number of inputs,
                unknown input, or shapes that do not fit the op.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise GraphError(f"invalid node name {name!r}: use letters, digits, '_', '.', ':', '-'")
        if name in self._nodes:
            raise GraphError(f"node '{name}' already exists")
        if not isinstance(op, Op):
            raise GraphError(f"node '{name}': {op!r} is not an IR op")
        refs = tuple(as_ref(r) for r in inputs)
        self._check_arity(name, op, refs)
        for r in refs:
            if r.delay not in (0, 1):
                raise GraphError(f"node '{name}': input {r} has delay {r.delay}; only 0 or 1 is allowed")
            if r.delay == 0 and r.node not in self._nodes:
                raise GraphError(f"node '{name}': input '{r.node}' does not exist (add it first)")
        node = Node(name, op, refs, dict(meta or {}))
        self._nodes[name] = node
        self._nx.add_node(name)
        for i, r in enumerate(refs):
            self._nx.add_edge(r.node, name, key=i, port=r.port, delay=r.delay)
        try:
            self._infer(node)
        except GraphError:
            for u, _, k in list(self._nx.in_edges(name, keys=True)):
                self._nx.remove_edge(u, name, key=k)
            if self._nx.degree(name) == 0:
                self._nx.remove_node(name)
            del self._nodes[name]
            raise
        return name

    def _check_arity(self, name: str, op: Op, refs: tuple[Ref, ...]) -> None:
        if op.arity is not None and len(refs) != op.arity:
            raise GraphError(f"node '{name}' ({type(op).__name__}) takes {op.arity} input(s), got {len(refs)}")
        if op.arity is None and len(refs) < 1:
            raise GraphError(f"node '{name}' ({type(op).__name__}) needs at least one input")

    def _infer(self, node: Node, strict: bool = False) -> bool:
        """Infer a node's output shapes; return False if an input shape is unknown yet."""
        shapes = []
        for r in node.inputs:
            src = self._nodes.get(r.node)
            if src is None or not src.shapes:
                if strict:
                    raise GraphError(f"node '{node.name}': input '{r.node}' does not exist")
                return False
            port = src.port(r)
            if port not in src.shapes:
                raise GraphError(
                    f"node '{node.name}': input '{r.node}' has no port '{port}' (ports: {list(src.op.ports)})"
                )
            shapes.append(src.shapes[port])
        try:
            node.shapes = node.op.infer(shapes)
        except ValueError as e:
            raise GraphError(f"node '{node.name}' ({type(node.op).__name__}): {e}") from None
        return True

    # -- queries -----------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node named '{name}'") from None

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nx(self) -> nx.MultiDiGraph:
        """The topology as a networkx multigraph (read-only view by convention).
        Edge attributes: ``port`` (source port or None), ``delay``; key = input index."""
        return self._nx

    def inputs(self) -> list[Node]:
        """`Input` nodes ordered by their ``index``."""
        return sorted((n for n in self._nodes.values() if isinstance(n.op, Input)), key=lambda n: n.op.index)

    def outputs(self) -> list[Node]:
        """`Output` nodes ordered by their ``index``."""
        return sorted((n for n in self._nodes.values() if isinstance(n.op, Output)), key=lambda n: n.op.index)

    def users(self, name: str) -> list[tuple[str, int]]:
        """``(user, input_index)`` pairs reading from ``name``, in node order."""
        out = [(v, k) for _, v, k in self._nx.out_edges(name, keys=True)]
        order = {n: i for i, n in enumerate(self._nodes)}
        return sorted(out, key=lambda p: (order[p[0]], p[1]))

    def of_type(self, *types: type) -> list[Node]:
        return [n for n in self._nodes.values() if isinstance(n.op, types)]

    def topo_order(self) -> list[str]:
        """Node names in an order where every same-step input comes first.

        Ties are broken by insertion order, so the order is deterministic.
        """
        dag = nx.DiGraph()
        dag.add_nodes_from(self._nodes)
        for u, v, d in self._nx.edges(data=True):
            if d["delay"] == 0:
                dag.add_edge(u, v)
        order = {n: i for i, n in enumerate(self._nodes)}
        try:
            return list(nx.lexicographical_topological_sort(dag, key=lambda n: order[n]))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(dag)
            raise GraphError(
                "same-step cycle " + " -> ".join(u for u, _ in cycle) + f" -> {cycle[0][0]}: "
                "recurrent edges must have delay=1"
            ) from None

    def recurrent_groups(self) -> list[list[str]]:
        """Strongly connected groups through delayed edges, in topological order.

        Each group is a list of node names (in `topo_order`); nodes outside any
        cycle form singleton groups. Simulators run a multi-node group step by
        step and everything else layer by layer over the whole time axis.
        """
        topo = self.topo_order()
        pos = {n: i for i, n in enumerate(topo)}
        full = nx.DiGraph()
        full.add_nodes_from(self._nodes)
        full.add_edges_from((u, v) for u, v in self._nx.edges())
        cond = nx.condensation(full)
        groups = [sorted(cond.nodes[c]["members"], key=pos.__getitem__) for c in cond.nodes]
        order = {c: i for i, c in enumerate(nx.lexicographical_topological_sort(cond, key=lambda c: min(pos[m] for m in cond.nodes[c]["members"])))}
        return [g for _, g in sorted(zip(cond.nodes, groups), key=lambda p: order[p[0]])]

    # -- editing (for passes) ----------------------------------------------
    def replace_op(self, name: str, op: Op) -> None:
        """Swap a node's op (same inputs), re-inferring shapes downstream."""
        node = self[name]
        old = node.op
        self._check_arity(name, op, node.inputs)
        node.op = op
        try:
            self.infer_shapes()
        except GraphError:
            node.op = old
            self.infer_shapes()
            raise

    def replace_ops(self, ops: dict[str, Op], inputs: dict[str, Sequence[RefLike]] | None = None) -> None:
        """Swap several ops (and optionally rewire inputs) at once, then re-infer shapes.

        For rewrites whose intermediate states are inconsistent (e.g. a pool folded
        into the next layer changes that layer's input shape). Rolled back entirely
        if the result does not infer.
        """
        old_ops = {n: self[n].op for n in ops}
        old_inputs = {n: self[n].inputs for n in (inputs or {})}
        try:
            for n, refs in (inputs or {}).items():
                self.set_inputs(n, refs)
            for n, op in ops.items():
                self._check_arity(n, op, self[n].inputs)
                self[n].op = op
            self.infer_shapes()
        except GraphError:
            for n, op in old_ops.items():
                self[n].op = op
            for n, refs in old_inputs.items():
                self.set_inputs(n, refs)
            self.infer_shapes()
            raise

    def set_inputs(self, name: str, inputs: Sequence[RefLike]) -> None:
        """Rewire a node's inputs."""
        node = self[name]
        refs = tuple(as_ref(r) for r in inputs)
        self._check_arity(name, node.op, refs)
        for r in refs:
            if r.node not in self._nodes:
                raise GraphError(f"node '{name}': input '{r.node}' does not exist")
        for u, _, k in list(self._nx.in_edges(name, keys=True)):
            self._nx.remove_edge(u, name, key=k)
        node.inputs = refs
        for i, r in enumerate(refs):
            self._nx.add_edge(r.node, name, key=i, port=r.port, delay=r.delay)

    def redirect(self, old: str, new: str, port_map: dict[str | None, str | None] | None = None) -> None:
        """Make every user of ``old`` except ``new`` itself read from ``new`` instead
        (ports kept unless mapped), e.g. after inserting ``new`` behind ``old``."""
        for user, idx in self.users(old):
            if user == new:
                continue
            refs = list(self[user].inputs)
            r = refs[idx]
            port = port_map.get(r.port, r.port) if port_map else r.port
            refs[idx] = Ref(new, port, r.delay)
            self.set_inputs(user, refs)

    def remove(self, name: str) -> None:
        """Remove a node that nobody reads from."""
        if name not in self._nodes:
            raise KeyError(f"no node named '{name}'")
        users = [u for u, _ in self.users(name) if u != name]
        if users:
            raise GraphError(f"cannot remove '{name}': still read by {users}")
        self._nx.remove_node(name)
        del self._nodes[name]

    def bypass(self, name: str) -> None:
        """Remove a one-input node, connecting its users to its input."""
        node = self[name]
        if len(node.inputs) != 1:
            raise GraphError(f"cannot bypass '{name}': it has {len(node.inputs)} inputs")
        src = node.inputs[0]
        for user, idx in self.users(name):
            refs = list(self[user].inputs)
            refs[idx] = Ref(src.node, src.port, src.delay + refs[idx].delay)
            self.set_inputs(user, refs)
        self.remove(name)

    def unique_name(self, base: str) -> str:
        """A node name not used yet, derived from ``base``."""
        if base not in self._nodes:
            return base
        i = 1
        while f"{base}_{i}" in self._nodes:
            i += 1
        return f"{base}_{i}"

    def copy(self) -> Graph:
        """A deep copy (ops are immutable and shared)."""
        g = Graph(self.name, self.num_steps)
        g.profile = self.profile
        g.meta = copy.deepcopy(self.meta)
        for n in self._nodes.values():
            g._nodes[n.name] = Node(n.name, n.op, n.inputs, copy.deepcopy(n.meta), dict(n.shapes))
        g._nx = self._nx.copy()
        return g

    # -- checking ----------------------------------------------------------
    def infer_shapes(self) -> None:
        """(Re)infer every node's shapes.

        Nodes are visited in topological order; around a recurrent loop a node
        whose delayed input is not known yet is retried after the others (ops
        such as `Add` can infer from their known inputs), then every node is
        checked once more with all input shapes known.

        Raises:
            GraphError: on a shape mismatch, naming the node.
        """
        order = self.topo_order()
        for name in order:
            self._nodes[name].shapes = {}
        pending = list(order)
        while pending:
            left = []
            for name in pending:
                node = self._nodes[name]
                shapes = []
                for r in node.inputs:
                    src = self._nodes[r.node]
                    shapes.append(src.shapes.get(src.port(r)) if src.shapes else None)
                if any(s is None for s in shapes) and not (node.op.partial_infer and any(s is not None for s in shapes)):
                    left.append(name)
                    continue
                try:
                    node.shapes = node.op.infer(shapes)
                except ValueError as e:
                    raise GraphError(f"node '{name}' ({type(node.op).__name__}): {e}") from None
            if len(left) == len(pending):
                raise GraphError(f"cannot infer shapes of {left}: every input around the loop is unknown")
            pending = left
        for name in order:
            self._infer(self._nodes[name], strict=True)

    def verify(self) -> Graph:
        """Check the graph invariants and return ``self``.

        * every input exists and names a real port; delays are 0 or 1;
        * the graph without delayed edges is acyclic;
        * shapes infer consistently, delayed edges included;
        * there is at least one `Input` and one `Output`; inputs have distinct
          indices, outputs too; every output reads a node;
        * a static (layout ``B``) input needs ``num_steps``; ``num_steps`` is within
          `npuc.limits.max_steps` (a number from a file must not ask for unbounded work);
        * if a numeric profile is set, every weighted or neuron op carries its
          integer parameters ``q``.

        Raises:
            GraphError: naming the first offending node.
        """
        for n in self._nodes.values():
            self._check_arity(n.name, n.op, n.inputs)
            for r in n.inputs:
                if r.node not in self._nodes:
                    raise GraphError(f"node '{n.name}': input '{r.node}' does not exist")
        self.infer_shapes()
        for n in self._nodes.values():
            for r in n.inputs:
                src = self._nodes[r.node]
                if src.port(r) not in src.shapes:
                    raise GraphError(f"node '{n.name}': input '{r.node}' has no port '{r.port}'")
        ins, outs = self.inputs(), self.outputs()
        if not ins or not outs:
            raise GraphError(f"graph '{self.name}' needs at least one Input and one Output node")
        for kind, nodes in (("Input", ins), ("Output", outs)):
            idx = [n.op.index for n in nodes]
            if len(set(idx)) != len(idx):
                raise GraphError(f"{kind} nodes share an index: {[(n.name, n.op.index) for n in nodes]}")
        if self.num_steps is None and any(n.op.layout == "B" for n in ins):
            raise GraphError("a static input (layout 'B') needs the graph's num_steps")
        if self.num_steps is not None and (not isinstance(self.num_steps, int) or self.num_steps < 1):
            raise GraphError(f"num_steps must be a positive integer, got {self.num_steps!r}")
        check_steps(self.num_steps, f"graph '{self.name}'")
        if self.profile is not None:
            for n in self._nodes.values():
                if hasattr(n.op, "q") and n.op.q is None and not isinstance(n.op, Output):
                    if isinstance(n.op, (LIF,)) or n.op.kind == "synapse" and n.op.arrays():
                        raise GraphError(
                            f"node '{n.name}' ({type(n.op).__name__}) has no integer parameters "
                            f"for profile '{self.profile.name}': run the quantize pass"
                        )
        return self

    # -- persistence -------------------------------------------------------
    def save(self, directory: str) -> None:
        """Write ``graph.json`` + ``tensors.npz`` to ``directory`` (see `npuc.ir.serialize`)."""
        from .serialize import save_graph

        save_graph(self, directory)

    @staticmethod
    def load(directory: str) -> Graph:
        """Read a graph written by `save`."""
        from .serialize import load_graph

        return load_graph(directory)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes, T={self.num_steps})"


def chain(graph: Graph, items: Iterable[tuple[str, Op]], start: RefLike) -> str:
    """Add ops one after another starting from ``start``; return the last name."""
    prev = start
    for name, op in items:
        prev = graph.add(name, op, [prev])
    return prev if isinstance(prev, str) else as_ref(prev).node
