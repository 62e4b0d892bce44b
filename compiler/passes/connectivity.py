"""Neuron-level connectivity of a graph: which source neurons feed which neurons.

A *population* is a group of neurons that sends spikes: every `LIF` node
(its neurons are also destinations) and every `Input` node (a source only;
input spikes enter the chip from the host). Between populations lie chains of
synapse and shape ops (Dense, Conv, pools, Add, Scale, Reshape, Permute, ...).
A *projection* is the composed relation of such a chain: the set of distinct
pairs ``(source neuron j, destination neuron i)`` with a nonzero composed
weight, i.e. the synapses a many-core chip stores for destination neuron ``i``.

Pairs are computed without materialising dense matrices:

* ``Dense`` (weight ``[out, in]`` on the last axis): the nonzero entries of the
  (quantized if present, else float) weight, repeated over leading axes.
* ``Conv1d``/``Conv2d``: geometrically, ``y[o, i, j]`` is fed by
  ``x[g(o) + c, s*i + d*u - p, s*j + d*v - p]`` for every in-bounds kernel tap
  with ``W[o, c, u, v] != 0`` (zero taps store no synapse).
* pools (sum, average, max): every in-bounds tap of the window, per channel.
* ``Scale``, ``BatchNorm``, ``Reshape``: element ``k`` feeds element ``k``;
  ``Permute``: the permuted index map.
* ``Add``: the union of its inputs' relations.
* chains compose: ``(j, m)`` then ``(m, i)`` gives ``(j, i)``; duplicate pairs
  (e.g. overlapping pool windows before a conv) are merged into one synapse.

Every edge array is sorted by destination (a CSR layout), and everything is
vectorised over synapses, so a 10M-synapse conv net takes seconds.

Projections are keyed by ``(source population, delay)``: a pair reached over
a delayed (recurrent) edge and over a same-step path needs two synapses.
Chains that end in an `Output` without a neuron population (a readout of
synaptic currents) have no destination neurons on the chip; they are listed
in `Connectivity.unmapped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, ops
from .base import PassError

IDX = np.int32  # neuron indices (populations are far below 2**31 neurons)


@dataclass
class Population:
    """A group of spike-sending neurons: a `LIF` node or an `Input` node.

    Attributes:
        name: node name.
        shape: per-sample neuron shape.
        kind: ``"neuron"`` (LIF: mapped to cores) or ``"input"`` (a source off the neuro cores: a
            host input, or a `SpikeAttention`, which runs as a custom process and sends its
            graded results one-to-one into the neurons that read them).
        offset: first global source id (sources of all populations are numbered
            consecutively, inputs first).
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    offset: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Projection:
    """Synapses from one source population into one destination population.

    ``src[k] -> dst[k]`` are neuron indices (flat, row-major) into the source
    and destination populations; pairs are distinct and sorted by ``dst``.
    """

    source: str
    delay: int
    src: np.ndarray
    dst: np.ndarray

    @property
    def synapses(self) -> int:
        return int(self.src.size)


@dataclass
class Connectivity:
    """Populations and the projections into every neuron population.

    Attributes:
        populations: every population (inputs first, then LIF nodes in
            topological order), by name.
        projections: per LIF population, the projections into it.
        unmapped: nodes read by an `Output` that end a synapse chain without a
            neuron population (host-side readout; not mapped to cores).
    """

    populations: dict[str, Population]
    projections: dict[str, list[Projection]]
    unmapped: list[str] = field(default_factory=list)

    @property
    def neuron_populations(self) -> list[Population]:
        return [p for p in self.populations.values() if p.kind == "neuron"]

    @property
    def num_sources(self) -> int:
        return sum(p.size for p in self.populations.values())

    def fan_in(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """CSR of the synapses into population ``name``: ``(indptr, src)`` where
        ``src[indptr[i]:indptr[i+1]]`` are the global source ids of neuron ``i``
        (projections concatenated per neuron; a source may appear once per
        projection)."""
        pop = self.populations[name]
        projs = self.projections.get(name, [])
        n = pop.size
        if not projs:
            return np.zeros(n + 1, np.int64), np.zeros(0, IDX)
        if len(projs) == 1:
            p = projs[0]
            dst = p.dst
            src = (p.src.astype(np.int64) + self.populations[p.source].offset).astype(IDX)
        else:
            dst_all = np.concatenate([p.dst for p in projs])
            src_all = np.concatenate(
                [(p.src.astype(np.int64) + self.populations[p.source].offset).astype(IDX) for p in projs]
            )
            order = np.argsort(dst_all, kind="stable")
            dst, src = dst_all[order], src_all[order]
        counts = np.bincount(dst, minlength=n)
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, src

    def synapse_count(self) -> int:
        return sum(p.synapses for ps in self.projections.values() for p in ps)


# -- relations -----------------------------------------------------------------


@dataclass
class _Rel:
    """Pairs (src neuron of a population, element of a node's output), sorted by element."""

    src: np.ndarray
    dst: np.ndarray
    identity: bool = False  # src == dst == arange (a population read directly)


def _identity(n: int) -> _Rel:
    a = np.arange(n, dtype=IDX)
    return _Rel(a, a, True)


def _window_edges(
    out_shape: tuple[int, int, int],
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    chan: np.ndarray,
    tap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of a windowed op, sorted by output element.

    Output ``(o, i, j)`` reads input ``(chan[o, c], s*i + d*u - p, s*j + d*v - p)``
    for every ``c`` and kernel tap ``(u, v)`` with ``tap[o, c, u, v]`` true and
    the position in bounds. Returns ``(src, dst)`` flat indices.
    """
    cout, ho, wo = out_shape
    h, w = in_hw
    kh, kw = kernel
    rows = stride[0] * np.arange(ho)[:, None] + dilation[0] * np.arange(kh)[None, :] - padding[0]
    cols = stride[1] * np.arange(wo)[:, None] + dilation[1] * np.arange(kw)[None, :] - padding[1]
    vr = (rows >= 0) & (rows < h)  # [ho, kh]
    vc = (cols >= 0) & (cols < w)  # [wo, kw]
    # [cout, ho, wo, ng, kh, kw]: one entry per potential synapse, in destination order.
    mask = (
        tap[:, None, None, :, :, :]
        & vr[None, :, None, None, :, None]
        & vc[None, None, :, None, None, :]
    )
    src = (
        chan.astype(np.int64)[:, None, None, :, None, None] * (h * w)
        + np.clip(rows, 0, h - 1)[None, :, None, None, :, None] * w
        + np.clip(cols, 0, w - 1)[None, None, :, None, None, :]
    )
    src = np.broadcast_to(src, mask.shape)[mask].astype(IDX)
    counts = mask.reshape(cout * ho * wo, -1).sum(axis=1)
    dst = np.repeat(np.arange(cout * ho * wo, dtype=IDX), counts)
    return src, dst


def _conv_edges(op: ops.Conv1d | ops.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    weight = op.q.weight if op.q is not None else op.weight
    if isinstance(op, ops.Conv1d):
        weight = weight[:, :, None, :]
        in_shape, out_shape = (in_shape[0], 1, in_shape[1]), (out_shape[0], 1, out_shape[1])
        kernel, stride = (1, op.kernel[0]), (1, op.stride[0])
        padding, dilation = (0, op.padding[0]), (1, op.dilation[0])
    else:
        kernel, stride, padding, dilation = op.kernel, op.stride, op.padding, op.dilation
    cout, cg = weight.shape[:2]
    per_group = cout // op.groups
    chan = (np.arange(cout)[:, None] // per_group) * cg + np.arange(cg)[None, :]
    return _window_edges(out_shape, in_shape[1:], kernel, stride, padding, dilation, chan, weight != 0)


def _pool_edges(op, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    c = in_shape[0]
    chan = np.arange(c)[:, None]
    tap = np.ones((c, 1, *op.kernel), dtype=bool)
    return _window_edges(out_shape, in_shape[1:], op.kernel, op.stride, op.padding, (1, 1), chan, tap)


def _dense_edges(op: ops.Dense, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    weight = op.q.weight if op.q is not None else op.weight
    o, i = np.nonzero(weight)  # row-major: sorted by output feature
    lead = int(np.prod(in_shape[:-1], dtype=np.int64))
    fin, fout = weight.shape[1], weight.shape[0]
    t = np.arange(lead, dtype=np.int64)[:, None]
    src = (t * fin + i[None, :]).ravel().astype(IDX)
    dst = (t * fout + o[None, :]).ravel().astype(IDX)
    return src, dst


def _compose(rel: _Rel, src_mid: np.ndarray, dst: np.ndarray, n_mid: int) -> _Rel:
    """Compose ``rel`` (population -> mid elements) with op edges (mid -> out, sorted by out)."""
    if rel.identity:
        return _Rel(src_mid, dst)
    counts = np.bincount(rel.dst, minlength=n_mid).astype(np.int64)
    starts = np.zeros(n_mid + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    rep = counts[src_mid]
    total = int(rep.sum())
    out_dst = np.repeat(dst, rep)
    base = np.repeat(starts[src_mid] - (np.cumsum(rep) - rep), rep)
    out_src = rel.src[base + np.arange(total, dtype=np.int64)]
    # Pairs are distinct when every source element reaches at most one mid element.
    if rel.src.size and np.bincount(rel.src).max() > 1:
        return _dedupe(out_src, out_dst)
    return _Rel(out_src, out_dst)


def _dedupe(src: np.ndarray, dst: np.ndarray) -> _Rel:
    if src.size == 0:
        return _Rel(src, dst)
    span = int(src.max()) + 1
    key = np.unique(dst.astype(np.int64) * span + src)
    return _Rel((key % span).astype(IDX), (key // span).astype(IDX))


class _Builder:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.pops: dict[str, Population] = {}
        self.memo: dict[tuple[str, str | None], dict[tuple[str, int], _Rel]] = {}
        self.active: set[str] = set()

    def rel(self, name: str, port: str | None) -> dict[tuple[str, int], _Rel]:
        """Relations from every (source population, delay) to ``name``'s output elements."""
        node = self.graph[name]
        if name in self.pops:
            return {(name, 0): _identity(self.pops[name].size)}
        key = (name, port)
        if key in self.memo:
            return self.memo[key]
        if name in self.active:
            raise PassError(
                f"node '{name}': a recurrent loop closes through synapse ops only; map-cores "
                "needs a neuron (LIF) in every loop"
            )
        self.active.add(name)
        try:
            out = self._op_rel(node)
        finally:
            self.active.discard(name)
        self.memo[key] = out
        return out

    def _input_rel(self, node, k: int) -> dict[tuple[str, int], _Rel]:
        r = node.inputs[k]
        rels = self.rel(r.node, r.port)
        if r.delay:
            rels = {(s, d + r.delay): v for (s, d), v in rels.items()}
        return rels

    def _op_rel(self, node) -> dict[tuple[str, int], _Rel]:
        op = node.op
        in_shapes = []
        for r in node.inputs:
            src = self.graph[r.node]
            in_shapes.append(tuple(src.shapes[src.port(r)]))
        out_shape = tuple(node.shape)
        if isinstance(op, ops.Add):
            merged: dict[tuple[str, int], list[_Rel]] = {}
            for k in range(len(node.inputs)):
                for key, rel in self._input_rel(node, k).items():
                    merged.setdefault(key, []).append(rel)
            out = {}
            for key, rels in merged.items():
                if len(rels) == 1:
                    out[key] = rels[0]
                else:
                    out[key] = _dedupe(np.concatenate([r.src for r in rels]), np.concatenate([r.dst for r in rels]))
            return out
        if len(node.inputs) != 1:
            raise PassError(f"node '{node.name}' ({type(op).__name__}): map-cores cannot derive its connectivity")
        n_in = int(np.prod(in_shapes[0], dtype=np.int64))
        if isinstance(op, (ops.Scale, ops.BatchNorm, ops.Reshape)):
            return self._input_rel(node, 0)
        if isinstance(op, ops.Permute):
            perm = np.arange(n_in, dtype=IDX).reshape(in_shapes[0]).transpose(op.dims).ravel()
            edges = (perm, np.arange(n_in, dtype=IDX))
        elif isinstance(op, ops.Dense):
            edges = _dense_edges(op, in_shapes[0], out_shape)
        elif isinstance(op, (ops.Conv1d, ops.Conv2d)):
            edges = _conv_edges(op, in_shapes[0], out_shape)
        elif isinstance(op, (ops.SumPool2d, ops.AvgPool2d, ops.MaxPool2d)):
            edges = _pool_edges(op, in_shapes[0], out_shape)
        else:
            raise PassError(
                f"node '{node.name}' ({type(op).__name__}): map-cores cannot derive the neuron "
                "connectivity of this op"
            )
        return {key: _compose(rel, edges[0], edges[1], n_in) for key, rel in self._input_rel(node, 0).items()}


def extract_connectivity(graph: Graph) -> Connectivity:
    """Compute the neuron-level connectivity of ``graph`` (see module docstring).

    Raises:
        PassError: an op whose connectivity is unknown, or a recurrent loop
            without a neuron population in it.
    """
    b = _Builder(graph)
    offset = 0
    for n in graph.inputs():
        b.pops[n.name] = Population(n.name, tuple(n.shape), "input", offset)
        offset += b.pops[n.name].size
    topo = graph.topo_order()
    for name in topo:  # Loihi 2: a custom process off the neuro cores whose graded outputs enter like inputs
        n = graph[name]
        if isinstance(n.op, ops.SpikeAttention):
            b.pops[name] = Population(name, tuple(n.shape), "input", offset)
            offset += b.pops[name].size
    for name in topo:
        n = graph[name]
        if isinstance(n.op, ops.LIF):
            b.pops[name] = Population(name, tuple(n.shape), "neuron", offset)
            offset += b.pops[name].size
    projections: dict[str, list[Projection]] = {}
    for name in topo:
        n = graph[name]
        if not isinstance(n.op, ops.LIF):
            continue
        rels = b._input_rel(n, 0)
        projections[name] = [
            Projection(src_name, delay, rel.src, rel.dst) for (src_name, delay), rel in sorted(
                rels.items(), key=lambda kv: (b.pops[kv[0][0]].offset, kv[0][1]))
            if rel.src.size
        ]
    unmapped = []
    for o in graph.outputs():
        r = o.inputs[0]
        if r.node not in b.pops and not isinstance(graph[r.node].op, (ops.Output, ops.Input)):
            unmapped.append(r.node)
    return Connectivity(b.pops, projections, sorted(set(unmapped)))


def source_rates(graph: Graph, conn: Connectivity) -> tuple[np.ndarray, str]:
    """Mean spikes per step of every source neuron (global ids), and where they came from.

    ``node.meta["rate"]`` is a scalar (mean over the population) or an array of
    one value per neuron (any shape with the population's size). Populations
    without it get 1.0 (every neuron spikes every step: a worst case).

    Returns:
        ``(rates, provenance)`` with provenance ``"measured"``, ``"default"``
        (no population has a rate) or ``"partial"``.

    Raises:
        PassError: a rate of the wrong size, negative or not finite.
    """
    rates = np.ones(conn.num_sources, np.float64)
    have = 0
    for pop in conn.populations.values():
        if pop.name not in graph:  # a fan-in relay (map-cores): a graded message every step at worst
            continue
        meta = graph[pop.name].meta
        if "rate" not in meta or meta["rate"] is None:
            continue
        r = np.asarray(meta["rate"], dtype=np.float64).ravel()
        if r.size not in (1, pop.size):
            raise PassError(
                f"node '{pop.name}': meta['rate'] has {r.size} values for {pop.size} neurons (give a scalar or one per neuron)"
            )
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            raise PassError(f"node '{pop.name}': meta['rate'] must be finite and non-negative")
        rates[pop.offset : pop.offset + pop.size] = r
        have += 1
    n = sum(1 for p in conn.populations if p in graph)
    return rates, ("measured" if have == n and n else "default" if have == 0 else "partial")


# -- fan-in relays ---------------------------------------------------------------


def relay_blocks(sizes: list[tuple[str, int]], axons: int) -> list[tuple[str, int, int]]:
    """The relay blocks of a neuron population whose fan-in exceeds ``axons`` input axons.

    ``sizes``: its source populations ``(name, neurons)`` in connectivity order. Each source
    population is cut into ``ceil(n / axons)`` balanced chunks of consecutive (row-major)
    neurons; each chunk ``(source, lo, hi)`` feeds one block of relay neurons (one relay per
    destination neuron) that forwards its partial sum. The Lava backend emits the same blocks
    from ``node.meta["fan_in_relays"]``."""
    blocks = []
    for name, n in sizes:
        k = max(1, -(-n // axons))
        step = -(-n // k)
        blocks += [(name, lo, min(lo + step, n)) for lo in range(0, n, step)]
    return blocks


def max_distinct_fan_in(conn: Connectivity, name: str) -> int:
    """The largest number of distinct source neurons feeding one neuron of population ``name``."""
    indptr, src = conn.fan_in(name)
    most = int(np.diff(indptr).max(initial=0))  # synapses per neuron bound the distinct sources
    if most <= 1 or len(conn.projections.get(name, [])) <= 1:
        return most  # one projection holds distinct pairs
    dst = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
    pairs = np.unique(dst * conn.num_sources + src.astype(np.int64))
    return int(np.bincount(pairs // conn.num_sources).max())


def insert_relays(conn: Connectivity, name: str, blocks: list[tuple[str, int, int]]) -> str:
    """Route every synapse into population ``name`` through relay neurons (see `relay_blocks`).

    Adds population ``<name>.relay`` (``len(blocks) x`` the destination's neurons; relay ``(b, i)``
    receives block ``b``'s synapses into neuron ``i``) just before ``name``, which then reads one
    relay per block instead of the sources. Global source ids are renumbered. Returns the relay's
    name."""
    dst_pop = conn.populations[name]
    n = dst_pop.size
    relay = f"{name}.relay"
    into_relay: list[Projection] = []
    used = []
    for b, (source, lo, hi) in enumerate(blocks):
        parts = [p for p in conn.projections.get(name, []) if p.source == source]
        for p in parts:
            keep = (p.src >= lo) & (p.src < hi)
            if keep.any():
                into_relay.append(Projection(source, p.delay, p.src[keep], (p.dst[keep] + b * n).astype(IDX)))
                used.append(np.unique(p.dst[keep]).astype(np.int64) + b * n)
    rsrc = np.sort(np.concatenate(used)).astype(IDX) if used else np.zeros(0, IDX)
    by_source: dict[str, list[Projection]] = {}
    for p in into_relay:
        by_source.setdefault(p.source, []).append(p)
    merged = []
    for source, ps in by_source.items():  # one projection per (source, delay), sorted by destination
        for delay in sorted({p.delay for p in ps}):
            sel = [p for p in ps if p.delay == delay]
            s = np.concatenate([p.src for p in sel])
            d = np.concatenate([p.dst for p in sel])
            order = np.argsort(d, kind="stable")
            merged.append(Projection(source, delay, s[order], d[order]))
    pops: dict[str, Population] = {}
    for k, p in conn.populations.items():
        if k == name:
            pops[relay] = Population(relay, (len(blocks) * n,), "neuron")
        pops[k] = p
    offset = 0
    for p in pops.values():
        p.offset = offset
        offset += p.size
    order = np.argsort(rsrc % n, kind="stable")
    conn.populations.clear()
    conn.populations.update(pops)
    conn.projections[relay] = merged
    conn.projections[name] = [Projection(relay, 0, rsrc[order], (rsrc[order] % n).astype(IDX))]
    return relay
