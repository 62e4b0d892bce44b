"""The core packer behind ``map-cores``: neuron order (spatial tiles) and greedy packing
under every per-core limit (see `npuc.passes.mapping` for the algorithm and the objective)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Graph
from .base import PassError
from .connectivity import Connectivity, Population, gather_ranges

RESOURCES = ("neurons", "synapse_bits", "input_axons", "output_axons", "groups")
ORDERS = ("tiled", "chw")


@dataclass(frozen=True)
class Limits:
    """Per-core limits in the units the packer counts (synapses, not bits)."""

    neurons: int
    synapses: int
    input_axons: int
    output_axons: int
    groups: int
    weight_bits: int
    synapse_bits: int

    @classmethod
    def from_target(cls, cores: Any, weight_bits: int) -> Limits:
        return cls(
            neurons=int(cores.neurons_per_core),
            synapses=int(cores.synapse_memory_bits_per_core) // int(weight_bits),
            input_axons=int(cores.input_axons_per_core),
            output_axons=int(cores.output_axons_per_core),
            groups=int(cores.neuron_groups_per_core),
            weight_bits=int(weight_bits),
            synapse_bits=int(cores.synapse_memory_bits_per_core),
        )

    def as_dict(self) -> dict[str, int]:
        return {"neurons": self.neurons, "synapse_bits": self.synapse_bits, "input_axons": self.input_axons,
                "output_axons": self.output_axons, "groups": self.groups}


# -- per-population packing state ------------------------------------------------


@dataclass
class _Pop:
    """A neuron population in packing order.

    ``perm[p]`` is the neuron at position ``p``; ``indptr``/``src`` the CSR of
    its incoming synapses in position order (global source ids; ``src`` is None for a population
    with compact projections, whose sources `sources` builds per range from ``conn``); ``cum_out``
    prefix sums of output axons per position; ``bounds`` unit boundaries
    (tiles) in positions, ``boxes`` the box of each unit (None = index order).
    """

    pop: Population
    index: int  # topological rank among neuron populations
    perm: np.ndarray
    indptr: np.ndarray
    src: np.ndarray | None
    cum_out: np.ndarray
    bounds: np.ndarray
    boxes: list[tuple[tuple[int, int], ...]] | None
    tiling: dict[str, Any]
    conn: Connectivity | None = None

    def sources(self, p0: int, p1: int) -> np.ndarray:
        """Global source ids of the synapses into positions ``[p0, p1)``, grouped per position."""
        if self.src is not None:
            return self.src[self.indptr[p0]:self.indptr[p1]]
        return self.conn.gather(self.pop.name, self.perm[p0:p1])


@dataclass
class _Core:
    """A core being filled: its slices (population, first and last+1 position in
    that population's packing order), running use and its distinct sources."""

    slices: list[tuple[str, int, int]] = field(default_factory=list)  # (population, p0, p1)
    neurons: int = 0
    synapses: int = 0
    out_axons: int = 0
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # sorted unique

    @property
    def pops(self) -> set[str]:
        return {s[0] for s in self.slices}


def core_chunks(cores: list[_Core], sources: int = 1 << 22) -> list[list[_Core]]:
    """Consecutive runs of cores holding about ``sources`` input axons each (for bounded-memory sweeps)."""
    chunks: list[list[_Core]] = [[]]
    held = 0
    for c in cores:
        if held >= sources:
            chunks.append([])
            held = 0
        chunks[-1].append(c)
        held += c.sources.size
    return chunks if cores else []


def _first_flags(src: np.ndarray) -> np.ndarray:
    """``prev[k]``: index of the previous occurrence of ``src[k]`` (-1 if none)."""
    order = np.argsort(src, kind="stable")
    s = src[order]
    prev = np.full(src.size, -1, np.int64)
    same = np.flatnonzero(s[1:] == s[:-1])
    prev[order[same + 1]] = order[same]
    return prev


class _Distinct:
    """Sorted distinct values of index arrays, by marking a reusable boolean table
    (linear time; falls back to sorting when the values are spread thinly)."""

    def __init__(self, n: int) -> None:
        self.mark = np.zeros(max(n, 1), bool)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if values.size == 0:
            return np.zeros(0, np.int32)
        lo, hi = int(values.min()), int(values.max())
        if hi - lo > 16 * values.size + 65536:
            return np.unique(values).astype(np.int32)
        m = self.mark
        m[values] = True
        out = np.flatnonzero(m[lo:hi + 1]) + lo
        m[out] = False
        return out.astype(np.int32)


class Packer:
    """Greedy packing of all neuron populations into cores (see module docstring)."""

    def __init__(self, conn: Connectivity, limits: Limits, rates: np.ndarray, order: str,
                 tile: tuple[int, ...] | None) -> None:
        self.conn = conn
        self.lim = limits
        self.rates = rates
        self.order = order
        self.tile = tile
        self.cores: list[_Core] = []
        self.pops: dict[str, _Pop] = {}
        self.core_of = np.full(conn.num_sources, -1, np.int64)  # global source id -> core
        # explicit CSRs; a population with compact projections is gathered per core instead
        self.csr = {p.name: conn.fan_in(p.name) for p in conn.neuron_populations if not conn.compact(p.name)}
        self.distinct = _Distinct(conn.num_sources)
        self.unit_sources: dict[tuple[str, int], np.ndarray] = {}
        self._counts_of: tuple[str, np.ndarray] = ("", np.zeros(0, np.int64))
        self._fanout = np.zeros(conn.num_sources, np.int64)  # cores fed by each source, over cores[:_fanout_cores]
        self._fanout_cores = 0

    # -- output axons per neuron from already-mapped destinations ---------------
    def _out_axons(self, pop: Population) -> np.ndarray:
        """Output axons per neuron: the number of cores (so far) whose input axons include it.

        Populations are packed in reverse topological order, so every same-step
        destination of ``pop`` is already mapped; delayed (recurrent) ones are
        checked after packing.
        """
        n = pop.size
        if not self.cores:
            return np.zeros(n, np.int64)
        while self._fanout_cores < len(self.cores) - 1:  # cores before the last one never change again
            self._fanout[self.cores[self._fanout_cores].sources] += 1  # (a core's sources are distinct)
            self._fanout_cores += 1
        out = self._fanout[pop.offset:pop.offset + n].copy()
        last = self.cores[-1].sources.astype(np.int64) - pop.offset
        out[last[(last >= 0) & (last < n)]] += 1
        return out

    # -- tile search -------------------------------------------------------------
    def _tile_stats(self, pop: Population, out_ax: np.ndarray, idx: np.ndarray) -> tuple[bool, float]:
        """Whether neurons ``idx`` fit one core, and their rate-weighted input axons."""
        lim = self.lim
        if idx.size > lim.neurons:
            return False, 0.0
        if pop.name in self.csr:
            indptr, src = self.csr[pop.name]
            lens = indptr[idx + 1] - indptr[idx]
        else:
            lens = self._counts(pop)[idx]
        if int(lens.sum()) > lim.synapses or int(out_ax[idx].sum()) > lim.output_axons:
            return False, 0.0
        if pop.name in self.csr:
            u = self.distinct(src[gather_ranges(indptr[idx], lens)])
        else:
            u = self.conn.distinct_sources(pop.name, idx)
        if u.size > lim.input_axons:
            return False, 0.0
        return True, float(self.rates[u].sum())

    def _search(self, pop: Population, out_ax: np.ndarray) -> tuple[int, ...] | None:
        """The tile shape for ``pop`` (see module docstring), or None if no tile fits."""
        shape = pop.shape
        if self.tile is not None and len(shape) == len(self.tile) + 1:
            return (shape[0], *(min(t, s) for t, s in zip(self.tile, shape[1:])))

        def sizes(n: int) -> list[int]:
            return sorted({-(-n // k) for k in range(1, n + 1)}, reverse=True)

        cache: dict[tuple[int, ...], tuple[bool, float]] = {}

        def evaluate(t: tuple[int, ...]) -> tuple[bool, float]:
            if t not in cache:
                grid = [-(-n // s) for n, s in zip(shape, t)]
                start = [min((g // 2) * s, n - s) for g, s, n in zip(grid, t, shape)]
                axes = np.ix_(*[np.arange(a, a + s) for a, s in zip(start, t)])
                idx = np.ravel_multi_index(axes, shape).ravel()
                cache[t] = self._tile_stats(pop, out_ax, idx)
            return cache[t]

        def tiles(t: tuple[int, ...]) -> int:
            return math.prod(-(-n // s) for n, s in zip(shape, t))

        results = []  # (estimated messages, tiles, tile)
        feasible_channel_sizes = 0
        middle = [sizes(n) for n in shape[1:-1]]
        last = sizes(shape[-1])
        for t0 in sizes(shape[0]):
            if not evaluate((t0,) + (1,) * (len(shape) - 1))[0]:
                continue
            feasible_channel_sizes += 1
            for mid in itertools.product(*middle):
                head = (t0, *mid)
                if not evaluate(head + (1,))[0]:
                    continue
                lo, hi = 0, len(last) - 1  # last[hi] == 1 fits; find the largest fitting size
                while lo < hi:
                    m = (lo + hi) // 2
                    if evaluate(head + (last[m],))[0]:
                        hi = m
                    else:
                        lo = m + 1
                t = head + (last[lo],)
                results.append((tiles(t) * evaluate(t)[1], tiles(t), t))
            if feasible_channel_sizes >= 3:
                break
        if not results:
            return None
        best = min(r[0] for r in results)
        near = [r for r in results if r[0] <= best * 1.02 + 1e-12]
        return min(near, key=lambda r: (r[1], r[0], tuple(-x for x in r[2])))[2]

    # -- neuron order ------------------------------------------------------------
    def _prepare(self, pop: Population, index: int) -> _Pop:
        n = pop.size
        out_ax = self._out_axons(pop)
        shape = pop.shape
        tiling: dict[str, Any]
        boxes = None
        if self.order == "tiled" and len(shape) >= 2 and n > 1:
            t = self._search(pop, out_ax)
        else:
            t = None
        if t is not None:
            coords = np.unravel_index(np.arange(n), shape)
            q = [c // s for c, s in zip(coords, t)]
            r = [c % s for c, s in zip(coords, t)]
            grid = [-(-a // s) for a, s in zip(shape, t)]
            # lexsort: last key is primary. Tile: spatial grid row-major, channel group last;
            # inside: spatial row-major, channel last.
            keys = [r[0], *r[1:][::-1], q[0], *q[1:][::-1]]
            perm = np.lexsort(keys)
            tile_id = np.ravel_multi_index([*q[1:], q[0]], [*grid[1:], grid[0]])
            counts = np.bincount(tile_id, minlength=math.prod(grid))
            bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            boxes = []
            for tid in range(math.prod(grid)):
                g = np.unravel_index(tid, [*grid[1:], grid[0]])
                gq = (g[-1], *g[:-1])
                boxes.append(tuple((int(a * s), int(min((a + 1) * s, m))) for a, s, m in zip(gq, t, shape)))
            tiling = {"order": "tiled", "tile": list(t), "grid": grid}
        else:
            perm = np.arange(n)
            bounds = np.arange(n + 1, dtype=np.int64)  # every neuron is a unit
            tiling = {"order": "index" if self.order == "tiled" else "chw"}
        if pop.name in self.csr:
            indptr, src = self.csr.pop(pop.name)  # the position-ordered copy replaces it
            lens = (indptr[perm + 1] - indptr[perm]).astype(np.int64)
            osrc = src[gather_ranges(indptr[perm], lens)]
        else:
            lens, osrc = self._counts(pop)[perm], None
        oindptr = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=oindptr[1:])
        cum_out = np.zeros(n + 1, np.int64)
        np.cumsum(out_ax[perm], out=cum_out[1:])
        return _Pop(pop, index, perm.astype(np.int64), oindptr, osrc, cum_out, bounds, boxes, tiling, self.conn)

    def _counts(self, pop: Population) -> np.ndarray:
        if self._counts_of[0] != pop.name:
            self._counts_of = (pop.name, self.conn.counts(pop.name))
        return self._counts_of[1]

    # -- packing -------------------------------------------------------------------
    def _sources(self, P: _Pop, p0: int, p1: int) -> np.ndarray:
        if P.src is None:
            return self.conn.distinct_sources(P.pop.name, P.perm[p0:p1])
        return self.distinct(P.sources(p0, p1))

    def _unit_sources(self, P: _Pop, u: int) -> np.ndarray:
        key = (P.pop.name, u)
        if key not in self.unit_sources:
            self.unit_sources[key] = self._sources(P, int(P.bounds[u]), int(P.bounds[u + 1]))
        return self.unit_sources[key]

    def _fits_units(self, core: _Core, P: _Pop, u: int) -> tuple[int, np.ndarray]:
        """How many consecutive units of ``P`` from unit ``u`` fit in ``core`` (greedy),
        and the core's input axons with them."""
        lim = self.lim
        if P.pop.name not in core.pops and len(core.pops) >= lim.groups:
            return 0, core.sources
        k, srcs = 0, core.sources
        b = P.bounds
        while u + k < len(b) - 1:
            p0, p1 = int(b[u]), int(b[u + k + 1])
            neurons = core.neurons + p1 - p0
            syn = core.synapses + int(P.indptr[p1] - P.indptr[p0])
            out = core.out_axons + int(P.cum_out[p1] - P.cum_out[p0])
            if neurons > lim.neurons or syn > lim.synapses or out > lim.output_axons:
                break
            unit = self._unit_sources(P, u + k)
            new = np.union1d(srcs, unit) if srcs.size else unit
            if new.size > lim.input_axons:
                break
            srcs = new
            k += 1
        return k, srcs

    def _add(self, core: _Core, P: _Pop, p0: int, p1: int, sources: np.ndarray | None = None) -> None:
        if core.slices and core.slices[-1][0] == P.pop.name and core.slices[-1][2] == p0:
            core.slices[-1] = (P.pop.name, core.slices[-1][1], p1)
        else:
            core.slices.append((P.pop.name, p0, p1))
        core.neurons += p1 - p0
        core.synapses += int(P.indptr[p1] - P.indptr[p0])
        core.out_axons += int(P.cum_out[p1] - P.cum_out[p0])
        if sources is None:
            sources = self._sources(P, p0, p1)
            if core.sources.size:
                sources = np.union1d(core.sources, sources)
        core.sources = sources

    def _pack_run(self, P: _Pop, p0: int, p1: int, core: _Core | None) -> None:
        """Pack positions ``[p0, p1)`` at neuron granularity; the first chunk may join ``core``.

        Explicit populations flag first occurrences once over the run; compact ones gather each
        core's candidate window (at most a core's synapse memory) when it is needed."""
        lim = self.lim
        explicit = P.src is not None
        if explicit:
            e_lo = int(P.indptr[p0])
            window = P.src[e_lo:int(P.indptr[p1])]
            prev = _first_flags(window)
        pos = p0
        while pos < p1:
            if core is not None and P.pop.name not in core.pops and len(core.pops) >= lim.groups:
                core = None
            base_n = core.neurons if core else 0
            base_s = core.synapses if core else 0
            base_o = core.out_axons if core else 0
            base_src = core.sources if core else np.zeros(0, np.int32)
            hi = min(p1, pos + lim.neurons - base_n)
            e0 = int(P.indptr[pos])
            hi = min(hi, int(np.searchsorted(P.indptr, e0 + lim.synapses - base_s, "right")) - 1)
            hi = min(hi, int(np.searchsorted(P.cum_out, P.cum_out[pos] + lim.output_axons - base_o, "right")) - 1)
            end = pos
            if hi > pos:
                if explicit:  # values of positions [pos, hi) and their first occurrences from pos on
                    w0, w1 = e0 - e_lo, int(P.indptr[hi]) - e_lo
                    vals, first = window[w0:w1], prev[w0:w1] < w0
                else:
                    vals = P.sources(pos, hi)
                    first = _first_flags(vals) < 0
                new = first & ~np.isin(vals, base_src, assume_unique=False) if base_src.size else first
                cum = np.concatenate([[0], np.cumsum(new)])
                at = cum[P.indptr[pos + 1:hi + 1] - e0]
                end = pos + int(np.searchsorted(at, lim.input_axons - base_src.size, "right"))
            if end == pos:
                if core is not None:
                    core = None
                    continue
                self._single_neuron_error(P, pos)
            k = int(P.indptr[end]) - e0
            srcs = np.sort(vals[:k][first[:k]])
            if core is None:
                core = _Core()
                self.cores.append(core)
            elif core.sources.size:
                srcs = np.union1d(core.sources, srcs)
            self._add(core, P, pos, end, srcs)
            pos = end
            core = None

    def _single_neuron_error(self, P: _Pop, pos: int) -> None:
        lim = self.lim
        name = P.pop.name
        neuron = int(P.perm[pos])
        fan_in = int(P.indptr[pos + 1] - P.indptr[pos])
        distinct = int(np.unique(P.sources(pos, pos + 1)).size)
        out = int(P.cum_out[pos + 1] - P.cum_out[pos])
        if fan_in > lim.synapses:
            raise PassError(
                f"node '{name}': neuron {neuron} has {fan_in} incoming synapses x {lim.weight_bits} bits = "
                f"{fan_in * lim.weight_bits} bits > synapse_memory_bits_per_core = {lim.synapse_bits}; "
                "it cannot fit on one core (reduce the layer's fan-in or the weight bits)"
            )
        if distinct > lim.input_axons:
            raise PassError(
                f"node '{name}': neuron {neuron} is fed by {distinct} distinct source neurons > "
                f"input_axons_per_core = {lim.input_axons}; it cannot fit on one core"
            )
        if out > lim.output_axons:
            raise PassError(
                f"node '{name}': neuron {neuron} sends to {out} destination cores > "
                f"output_axons_per_core = {lim.output_axons}"
            )
        raise PassError(f"node '{name}': neuron {neuron} does not fit an empty core (neurons_per_core = {lim.neurons})")

    def pack(self, topo: list[str]) -> None:
        order = [self.conn.populations[n] for n in topo]
        for index, pop in reversed(list(enumerate(order))):
            P = self._prepare(pop, index)
            self.pops[pop.name] = P
            first_core = len(self.cores)
            nunits = len(P.bounds) - 1
            granular = P.boxes is None
            if granular:
                self._pack_run(P, 0, pop.size, self.cores[-1] if self.cores else None)
            else:
                u = 0
                while u < nunits:
                    last = self.cores[-1] if self.cores else None
                    k, srcs = self._fits_units(last, P, u) if last is not None else (0, None)
                    if k == 0:
                        fresh = _Core()
                        k, srcs = self._fits_units(fresh, P, u)
                        if k == 0:
                            self._pack_run(P, int(P.bounds[u]), int(P.bounds[u + 1]), None)
                            u += 1
                            continue
                        self.cores.append(fresh)
                        last = fresh
                    self._add(last, P, int(P.bounds[u]), int(P.bounds[u + k]), srcs)
                    u += k
            self._assign(P, first_core)
            self.unit_sources.clear()  # (units of a packed population are never asked for again)

    def _assign(self, P: _Pop, first_core: int) -> None:
        """Record the core of every neuron of ``P`` (cores from index ``first_core - 1`` on)."""
        off = P.pop.offset
        for ci in range(max(first_core - 1, 0), len(self.cores)):
            for name, p0, p1 in self.cores[ci].slices:
                if name == P.pop.name:
                    self.core_of[off + P.perm[p0:p1]] = ci

    # -- exact usage and the output-axon fix-up --------------------------------------
    def out_axon_usage(self) -> np.ndarray:
        n = len(self.cores)
        use = np.zeros(n, np.int64)
        for chunk in core_chunks(self.cores):  # bounded memory: a few million sources at a time
            owner = self.core_of[np.concatenate([c.sources for c in chunk])]
            use += np.bincount(owner[owner >= 0], minlength=n)
        return use

    def fix_output_axons(self) -> int:
        """Split cores over the output-axon limit until none is; return the number of splits."""
        splits = 0
        while True:
            use = self.out_axon_usage()
            bad = np.flatnonzero(use > self.lim.output_axons)
            if bad.size == 0:
                return splits
            new_cores: list[_Core] = []
            bad_set = set(bad.tolist())
            for ci, core in enumerate(self.cores):
                if ci not in bad_set:
                    new_cores.append(core)
                    continue
                parts = self._split(core)
                if parts is None:
                    self._fanout_error(core)
                new_cores.extend(parts)
                splits += 1
            self.cores = new_cores
            self._reassign_all()

    def _split(self, core: _Core) -> list[_Core] | None:
        if core.neurons <= 1:
            return None
        halves: list[list[tuple[str, int, int]]]
        if len(core.slices) > 1:
            h = len(core.slices) // 2
            halves = [core.slices[:h], core.slices[h:]]
        else:
            name, p0, p1 = core.slices[0]
            P = self.pops[name]
            inner = P.bounds[(P.bounds > p0) & (P.bounds < p1)]
            mid = (p0 + p1) // 2
            cut = int(inner[np.argmin(np.abs(inner - mid))]) if inner.size else mid
            halves = [[(name, p0, cut)], [(name, cut, p1)]]
        out = []
        for sl in halves:
            c = _Core()
            for name, a, b in sl:
                self._add(c, self.pops[name], a, b)
            c.out_axons = 0  # recomputed exactly by out_axon_usage
            out.append(c)
        return out

    def _fanout_error(self, core: _Core) -> None:
        name, p0, _ = core.slices[0]
        gid = self.pops[name].pop.offset + int(self.pops[name].perm[p0])
        dests = sum(int(np.count_nonzero(c.sources == gid)) for c in self.cores)
        raise PassError(
            f"node '{name}': neuron {int(self.pops[name].perm[p0])} sends to {dests} destination cores > "
            f"output_axons_per_core = {self.lim.output_axons} (its fan-out, split over cores small enough "
            "for their other limits, needs more output axons than one core has)"
        )

    def _reassign_all(self) -> None:
        for ci, core in enumerate(self.cores):
            for name, p0, p1 in core.slices:
                P = self.pops[name]
                self.core_of[P.pop.offset + P.perm[p0:p1]] = ci

    def renumber(self) -> None:
        """Order cores by (topological rank of their first population, position)."""
        def key(c: _Core) -> tuple[int, int]:
            name, p0, _ = min(c.slices, key=lambda s: (self.pops[s[0]].index, s[1]))
            return self.pops[name].index, p0

        self.cores.sort(key=key)
        for c in self.cores:
            c.slices.sort(key=lambda s: (self.pops[s[0]].index, s[1]))
        self._reassign_all()


# -- describing slices ---------------------------------------------------------------


def describe_slice(P: _Pop, p0: int, p1: int) -> dict[str, Any]:
    d: dict[str, Any] = {"node": P.pop.name, "neurons": int(p1 - p0)}
    if P.boxes is not None:
        i0, i1 = np.searchsorted(P.bounds, [p0, p1])
        if i0 < len(P.bounds) and i1 < len(P.bounds) and P.bounds[i0] == p0 and P.bounds[i1] == p1:
            d["boxes"] = [[list(ax) for ax in P.boxes[u]] for u in range(int(i0), int(i1))]
            return d
    idx = np.sort(P.perm[p0:p1])
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [idx.size]])
    d["ranges"] = [[int(idx[a]), int(idx[b - 1]) + 1] for a, b in zip(starts, ends)]
    return d


def neuron_cores(graph: Graph, name: str) -> np.ndarray:
    """Per-neuron core id (flat, row-major order) of LIF node ``name`` from ``graph.meta["mapping"]``.

    Raises:
        KeyError: the graph has no mapping or ``name`` is not mapped.
    """
    mapping = graph.meta["mapping"]
    shape = tuple(graph[name].shape)
    out = np.full(int(np.prod(shape)), -1, np.int64)
    for core in mapping["cores"]:
        for sl in core["slices"]:
            if sl["node"] != name:
                continue
            for a, b in sl.get("ranges", []):
                out[a:b] = core["id"]
            for box in sl.get("boxes", []):
                idx = np.ravel_multi_index(np.ix_(*[np.arange(lo, hi) for lo, hi in box]), shape)
                out[idx.ravel()] = core["id"]
    if np.any(out < 0):
        raise KeyError(f"node '{name}' is not (fully) mapped")
    return out
