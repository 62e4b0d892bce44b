"""``map-cores``: partition neuron populations into the cores of a many-core chip.

Every `LIF` population's neurons are split into *core slices* so that every
core respects every per-core limit of the target (`npuc.targets.CoreResources`):

* neurons: ``sum of slice sizes <= neurons_per_core``;
* synapse memory: ``weight_bits * sum over the core's neurons of their
  incoming synapses <= synapse_memory_bits_per_core``. Every synapse is stored
  explicitly, per destination neuron: convolution kernels are *not* shared
  between the neurons of a core (conservative assumption; Loihi 2's
  compressed/shared-weight formats are not public in detail);
* input axons: distinct source neurons (any population, inputs included)
  feeding the core ``<= input_axons_per_core``;
* output axons: distinct ``(source neuron on this core, destination core)``
  pairs ``<= output_axons_per_core``;
* neuron groups: populations with neurons on the core ``<= neuron_groups_per_core``.

Objective: multicast *messages* per time step, the number of distinct
``(source neuron, destination core)`` pairs weighted by the source's firing
rate (``node.meta["rate"]``: a scalar mean spikes per step or one value per
neuron; 1.0 when absent). Since each core receives one message per spike of
each distinct source feeding it, ``messages = sum over cores of the rate-weighted
input axons`` (a spike from the host counts as a message too).

Algorithm (``order="tiled"``, the default):

1. Neuron order. A population of shape ``(C, *spatial)`` with two or more
   axes is cut into boxes (*tiles*): spatial blocks across all channels,
   unless splitting channels sends fewer messages (e.g. when one spatial
   position's channels do not fit a core). Per population, a search over
   tile shapes picks the tiling with the fewest estimated messages (tiles x
   rate-weighted input axons of an interior tile), then the fewest tiles,
   among tilings whose interior tile fits a core. Candidates: the three
   largest channel-group sizes for which one position fits, every balanced
   split (``ceil(n / k)``) of the middle axes, and the largest fitting size
   of the last axis (binary search; fitting is monotone in tile size). Tiles are ordered row-major over the
   spatial grid (channel groups last); inside a tile, spatial position-major
   with all channels per position. One-axis populations (dense layers) keep
   index order. ``order="chw"`` keeps the flatten order everywhere (the naive
   baseline: a core then holds whole feature-map rows).
2. Greedy packing, populations in reverse topological order so that each
   population's destination cores are known and its output-axon use per
   neuron (distinct destination cores) is additive. A core takes whole tiles
   while every limit holds (populations may share a core up to the group
   limit); a tile that does not fit an empty core is split at neuron
   granularity (vectorised: prefix sums for neurons, synapses and output
   axons, first-occurrence flags for distinct input axons).
3. Delayed (recurrent) projections leave output axons unknown during
   packing; afterwards any core over the output-axon limit is split in two
   until every core fits.

Chips: ``ceil(cores / cores_per_chip)`` chips, core ``k`` on chip
``k // cores_per_chip`` (placement may move cores between chips and then
updates the chip). If that exceeds the target's chip count the pass uses
more chips and warns, or fails with ``fixed_chips=True``.

Results: ``graph.meta["mapping"]`` (JSON-serialisable; see `map_cores`) and
``node.meta["cores"]`` (sorted core ids) per LIF node. ``mapping_report``
turns them into the report section; ``neuron_cores`` decodes per-neuron cores.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..ir import Graph
from .base import Pass, PassContext, PassError
from .connectivity import Connectivity, Population, extract_connectivity, source_rates

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
    its incoming synapses in position order (global source ids); ``cum_out``
    prefix sums of output axons per position; ``bounds`` unit boundaries
    (tiles) in positions, ``boxes`` the box of each unit (None = index order).
    """

    pop: Population
    index: int  # topological rank among neuron populations
    perm: np.ndarray
    indptr: np.ndarray
    src: np.ndarray
    cum_out: np.ndarray
    bounds: np.ndarray
    boxes: list[tuple[tuple[int, int], ...]] | None
    tiling: dict[str, Any]


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


def _gather_ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Indices ``concat(arange(s, s + l) for s, l in zip(starts, lens))``, vectorised."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(starts.astype(np.int64) - (np.cumsum(lens) - lens), lens)
    return shift + np.arange(total, dtype=np.int64)


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


class _Packer:
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
        self.csr = {p.name: conn.fan_in(p.name) for p in conn.neuron_populations}
        self.distinct = _Distinct(conn.num_sources)
        self.unit_sources: dict[tuple[str, int], np.ndarray] = {}

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
        src = np.concatenate([c.sources for c in self.cores]).astype(np.int64) - pop.offset
        src = src[(src >= 0) & (src < n)]
        return np.bincount(src, minlength=n).astype(np.int64)

    # -- tile search -------------------------------------------------------------
    def _tile_stats(self, pop: Population, out_ax: np.ndarray, idx: np.ndarray) -> tuple[bool, float]:
        """Whether neurons ``idx`` fit one core, and their rate-weighted input axons."""
        lim = self.lim
        if idx.size > lim.neurons:
            return False, 0.0
        indptr, src = self.csr[pop.name]
        lens = indptr[idx + 1] - indptr[idx]
        if int(lens.sum()) > lim.synapses or int(out_ax[idx].sum()) > lim.output_axons:
            return False, 0.0
        u = self.distinct(src[_gather_ranges(indptr[idx], lens)])
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
        indptr, src = self.csr[pop.name]
        lens = (indptr[perm + 1] - indptr[perm]).astype(np.int64)
        oindptr = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=oindptr[1:])
        osrc = src[_gather_ranges(indptr[perm], lens)]
        cum_out = np.zeros(n + 1, np.int64)
        np.cumsum(out_ax[perm], out=cum_out[1:])
        return _Pop(pop, index, perm.astype(np.int64), oindptr, osrc, cum_out, bounds, boxes, tiling)

    # -- packing -------------------------------------------------------------------
    def _sources(self, P: _Pop, p0: int, p1: int) -> np.ndarray:
        return self.distinct(P.src[P.indptr[p0]:P.indptr[p1]])

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
        """Pack positions ``[p0, p1)`` at neuron granularity; the first chunk may join ``core``."""
        lim = self.lim
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
                w0, w1 = e0 - e_lo, int(P.indptr[hi]) - e_lo
                new = prev[w0:w1] < w0
                if base_src.size:
                    new &= ~np.isin(window[w0:w1], base_src, assume_unique=False)
                cum = np.concatenate([[0], np.cumsum(new)])
                at = cum[P.indptr[pos + 1:hi + 1] - e0]
                end = pos + int(np.searchsorted(at, lim.input_axons - base_src.size, "right"))
            if end == pos:
                if core is not None:
                    core = None
                    continue
                self._single_neuron_error(P, pos)
            w0, w1 = e0 - e_lo, int(P.indptr[end]) - e_lo
            first = prev[w0:w1] < w0
            srcs = np.sort(window[w0:w1][first])
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
        distinct = int(np.unique(P.src[P.indptr[pos]:P.indptr[pos + 1]]).size)
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
        if not n:
            return np.zeros(0, np.int64)
        src = np.concatenate([c.sources for c in self.cores]).astype(np.int64)
        owner = self.core_of[src]
        return np.bincount(owner[owner >= 0], minlength=n).astype(np.int64)

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


def _describe(P: _Pop, p0: int, p1: int) -> dict[str, Any]:
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


# -- the pass ----------------------------------------------------------------------------


def _weight_bits(graph: Graph, target: Any) -> int:
    prof = graph.profile if graph.profile is not None else target.profile
    return int(prof.weight_bits)


def map_cores(graph: Graph, target: Any, order: str = "tiled", tile: tuple[int, ...] | None = None,
              fixed_chips: bool = False, warn: Any = None) -> dict[str, Any]:
    """Partition ``graph``'s LIF populations into cores of ``target`` (see module docstring).

    Sets ``graph.meta["mapping"]`` and ``node.meta["cores"]`` and returns the mapping::

        {"order", "weight_bits", "limits": {resource: per-core limit},
         "cores_per_chip", "mesh", "chips", "chips_target",
         "cores": [{"id", "chip", "slices": [{"node", "neurons", "boxes" | "ranges"}],
                    "usage": {resource: used}}],
         "populations": [{"node", "shape", "neurons", "synapses", "cores", "tiling",
                          "messages_per_step"}],
         "traffic": {"src": [core or -1 = host], "dst": [core], "messages": [per step], "pairs": [...]},
         "totals": {"cores", "chips", "neurons", "synapses", "messages_per_step",
                    "multicast_pairs", "input_messages_per_step", "synops_per_step",
                    "spikes_per_step", "capacity_lower_bound", "lower_bounds": {resource: cores}},
         "rates": "measured" | "partial" | "default", "unmapped": [...], "seconds"}

    ``boxes`` are per-axis half-open ``[lo, hi)`` index boxes of the population's
    shape; ``ranges`` are half-open flat (row-major) index ranges.

    Raises:
        PassError: no core resources in the target, a neuron that cannot fit any
            core (naming the node and the limit), or too many chips with
            ``fixed_chips``.
    """
    t0 = time.perf_counter()
    if order not in ORDERS:
        raise PassError(f"map-cores: order '{order}' is not one of {list(ORDERS)}")
    if target is None or getattr(target, "cores", None) is None:
        raise PassError("map-cores needs a many-core target with core resources (e.g. loihi2)")
    res = target.cores
    for f in ("neurons_per_core", "synapse_memory_bits_per_core", "input_axons_per_core",
              "output_axons_per_core", "neuron_groups_per_core", "cores_per_chip"):
        if int(getattr(res, f)) < 1:
            raise PassError(f"target '{target.name}': core resource '{f}' must be positive")
    lim = Limits.from_target(res, _weight_bits(graph, target))
    if lim.synapses < 1:
        raise PassError(f"target '{target.name}': synapse memory {lim.synapse_bits} bits holds no {lim.weight_bits}-bit weight")
    conn = extract_connectivity(graph)
    rates, provenance = source_rates(graph, conn)
    packer = _Packer(conn, lim, rates, order, tile)
    topo = [p.name for p in conn.neuron_populations]
    packer.pack(topo)
    splits = packer.fix_output_axons()
    packer.renumber()
    cores = packer.cores
    out_use = packer.out_axon_usage()

    # Exact per-core usage, checked against every limit (the packer guarantees it).
    usage = []
    for ci, c in enumerate(cores):
        neurons = sum(p1 - p0 for _, p0, p1 in c.slices)
        syn = sum(int(packer.pops[n].indptr[p1] - packer.pops[n].indptr[p0]) for n, p0, p1 in c.slices)
        u = {"neurons": int(neurons), "synapse_bits": int(syn * lim.weight_bits),
             "input_axons": int(c.sources.size), "output_axons": int(out_use[ci]), "groups": len(c.pops)}
        for r, v in u.items():
            if v > lim.as_dict()[r]:
                raise PassError(f"map-cores: internal error, core {ci} uses {v} {r} > {lim.as_dict()[r]}")
        usage.append(u)

    ncores = len(cores)
    cpc = int(res.cores_per_chip)
    chips = max(1, -(-ncores // cpc))
    if chips > int(res.chips):
        msg = (f"the graph needs {ncores} cores = {chips} chips of {cpc} cores, but target "
               f"'{target.name}' has {res.chips} chip(s)")
        if fixed_chips:
            raise PassError(msg)
        if warn is not None:
            warn(msg + f"; mapping onto {chips} chips")

    # Traffic between cores (src -1 = host input) and messages.
    if ncores:
        all_src = np.concatenate([c.sources for c in cores]).astype(np.int64)
        all_dst = np.repeat(np.arange(ncores), [c.sources.size for c in cores])
    else:
        all_src = np.zeros(0, np.int64)
        all_dst = np.zeros(0, np.int64)
    w = rates[all_src]
    owner = packer.core_of[all_src]
    key = (owner + 1) * max(ncores, 1) + all_dst
    ukey, inv = np.unique(key, return_inverse=True)
    tr_msgs = np.bincount(inv, weights=w, minlength=ukey.size)
    tr_pairs = np.bincount(inv, minlength=ukey.size)
    traffic = {"src": (ukey // max(ncores, 1) - 1).tolist(), "dst": (ukey % max(ncores, 1)).tolist(),
               "messages": [float(x) for x in tr_msgs], "pairs": [int(x) for x in tr_pairs]}

    # Per population facts.
    pops_json = []
    synops = 0.0
    for name in topo:
        P = packer.pops[name]
        projs = conn.projections.get(name, [])
        for pr in projs:
            synops += float(rates[conn.populations[pr.source].offset + pr.src.astype(np.int64)].sum())
        ids = sorted({ci for ci, c in enumerate(cores) if name in c.pops})
        msgs = 0.0
        for ci in ids:
            c = cores[ci]
            if len(c.pops) == 1:
                msgs += float(rates[c.sources].sum())
            else:  # a shared core: the sources of this population's slices only
                parts = [P.src[P.indptr[p0]:P.indptr[p1]] for n, p0, p1 in c.slices if n == name]
                msgs += float(rates[packer.distinct(np.concatenate(parts))].sum())
        pops_json.append({"node": name, "shape": list(P.pop.shape), "neurons": P.pop.size,
                          "synapses": sum(pr.synapses for pr in projs), "cores": ids,
                          "tiling": P.tiling, "messages_per_step": msgs})
        graph[name].meta["cores"] = ids

    cores_json = [{"id": ci, "chip": ci // cpc,
                   "slices": [_describe(packer.pops[n], p0, p1) for n, p0, p1 in c.slices],
                   "usage": usage[ci]} for ci, c in enumerate(cores)]

    total_syn = conn.synapse_count()
    fed = np.zeros(conn.num_sources, bool)
    for c in cores:
        fed[c.sources] = True
    lif_fed = fed.copy()
    for p in conn.populations.values():
        if p.kind == "input":
            lif_fed[p.offset:p.offset + p.size] = False
    demand = {"neurons": sum(p.size for p in conn.neuron_populations),
              "synapse_bits": total_syn * lim.weight_bits,
              "input_axons": int(fed.sum()),
              "output_axons": int(lif_fed.sum()),
              "groups": len(topo)}
    lower = {r: -(-int(demand[r]) // lim.as_dict()[r]) for r in RESOURCES}
    lif_mask = packer.core_of >= 0
    input_msgs = float(w[owner < 0].sum())
    mapping = {
        "order": order,
        "weight_bits": lim.weight_bits,
        "limits": lim.as_dict(),
        "cores_per_chip": cpc,
        "mesh": [int(x) for x in res.mesh],
        "chips": chips,
        "chips_target": int(res.chips),
        "cores": cores_json,
        "populations": pops_json,
        "traffic": traffic,
        "totals": {
            "cores": ncores,
            "chips": chips,
            "neurons": demand["neurons"],
            "synapses": int(total_syn),
            "messages_per_step": float(w.sum()),
            "multicast_pairs": int(all_src.size),
            "input_messages_per_step": input_msgs,
            "synops_per_step": synops,
            "spikes_per_step": float(rates[lif_mask].sum()),
            "capacity_lower_bound": max(lower.values()) if topo else 0,
            "lower_bounds": lower,
            "output_axon_splits": splits,
        },
        "rates": provenance,
        "unmapped": conn.unmapped,
        "seconds": round(time.perf_counter() - t0, 4),
    }
    # the graph keeps only what is deterministic (a saved build is byte-identical run to run)
    graph.meta["mapping"] = {k: v for k, v in mapping.items() if k != "seconds"}
    return mapping


@dataclass(frozen=True)
class MapCores(Pass):
    """Partition every LIF population into cores under every per-core limit.

    Options:
        order: ``"tiled"`` (spatial tiles x all channels; default) or ``"chw"``
            (flatten order: the naive baseline).
        tile: fixed spatial tile ``(h, w)`` (or ``(l,)``) for channel-first
            populations instead of the search; ``None`` = search.
        fixed_chips: fail instead of using more chips than the target has.

    Afterwards ``graph.meta["mapping"]`` holds the cores, their slices and
    usage, traffic and totals (see `map_cores`), and every LIF node has
    ``meta["cores"]``. The IR itself is unchanged.
    """

    name: ClassVar[str] = "map-cores"
    order: str = "tiled"
    tile: tuple[int, ...] | None = None
    fixed_chips: bool = False

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        m = map_cores(graph, ctx.target, self.order, self.tile, self.fixed_chips, ctx.warn)
        t = m["totals"]
        self._report(cores=t["cores"], chips=t["chips"], capacity_lower_bound=t["capacity_lower_bound"],
                     messages_per_step=round(t["messages_per_step"], 3), multicast_pairs=t["multicast_pairs"],
                     synapses=t["synapses"], rates=m["rates"])
        return graph


# -- report section -------------------------------------------------------------------


def estimate_energy(graph: Graph, target: Any, steps: int | None = None) -> dict[str, Any] | None:
    """Estimated synaptic operations and energy per inference (an estimate, not a measurement).

    With per-step figures from the mapping and placement (rate-weighted) and
    ``T = steps or graph.num_steps or 1`` steps::

        synops   = T * sum over synapses of the source's rate
        messages = T * rate-weighted (source neuron, destination core) pairs
        updates  = T * neurons                     (every neuron updates every step)
        hops     = T * rate-weighted message hops  (0 without a placement)
        energy   = synops * synop_pj + messages * spike_pj
                   + updates * neuron_update_pj + hops * hop_pj

    The pJ figures come from ``target.energy`` (which cites its source; for
    Loihi 2 they are Loihi 1 pre-silicon numbers). Returns None when the
    target has no energy figures.
    """
    mapping = graph.meta.get("mapping")
    fig = getattr(target, "energy", None) or {}
    keys = ("synop_pj", "spike_pj", "neuron_update_pj", "hop_pj")
    if not mapping or not all(k in fig for k in keys):
        return None
    T = int(steps or graph.num_steps or 1)
    tot = mapping["totals"]
    hops = float(graph.meta.get("placement", {}).get("hop_traffic_per_step", 0.0))
    counts = {"synops": T * tot["synops_per_step"], "messages": T * tot["messages_per_step"],
              "neuron_updates": T * tot["neurons"], "hops": T * hops}
    pj = {"synops": counts["synops"] * fig["synop_pj"], "messages": counts["messages"] * fig["spike_pj"],
          "neuron_updates": counts["neuron_updates"] * fig["neuron_update_pj"], "hops": counts["hops"] * fig["hop_pj"]}
    return {
        "steps": T,
        "counts": counts,
        "energy_uj": {k: v * 1e-6 for k, v in pj.items()},
        "total_uj": sum(pj.values()) * 1e-6,
        "figures_pj": {k: fig[k] for k in keys},
        "rates": mapping["rates"],
        "note": "estimate: per-event energies x counted events; rates "
                + ("measured" if mapping["rates"] == "measured" else "partly assumed (1 spike/step where missing)"),
        "source": (fig.get("sources") or {}).get("all", "target energy figures"),
    }


def mapping_report(graph: Graph, target: Any) -> dict[str, Any]:
    """The mapping section of ``report.json`` for a mapped (and placed) graph.

    Returns::

        {"target", "cores": {"used", "chips", "chips_target", "cores_per_chip",
                             "capacity_lower_bound", "lower_bounds": {resource: cores}},
         "limits": {resource: per-core limit},
         "utilisation": {resource: {"total", "min", "mean", "max"}}  (fractions of the limit),
         "per_core": {"id", "chip", "x", "y", "neurons", "synapse_bits", "input_axons",
                      "output_axons", "groups", "populations"}  (columns, one entry per core),
         "layers": [{"node", "shape", "neurons", "synapses", "cores", "tiling", "messages_per_step"}],
         "traffic": {"messages_per_step", "multicast_pairs", "input_messages_per_step",
                     "synops_per_step", "spikes_per_step", "hop_traffic_per_step",
                     "initial_hop_traffic_per_step", "row_major_hop_traffic_per_step",
                     "max_link_load", "host_link_load"},
         "placement": {"initial", "seed", "moves", "temperatures", "stopped_early"} | None,
         "energy": `estimate_energy` | None, "rates", "unmapped"}
    (pass times are in the report's pass log)

    Raises:
        KeyError: the graph has no ``meta["mapping"]``.
    """
    m = graph.meta["mapping"]
    p = graph.meta.get("placement")
    lim = m["limits"]
    cores = m["cores"]
    util = {}
    for r in RESOURCES:
        used = np.array([c["usage"][r] for c in cores], dtype=np.float64)
        frac = used / lim[r] if used.size else np.zeros(1)
        util[r] = {"total": int(used.sum()), "min": float(frac.min()), "mean": float(frac.mean()),
                   "max": float(frac.max())}
    per_core: dict[str, list] = {"id": [c["id"] for c in cores], "chip": [c["chip"] for c in cores]}
    pos = p["positions"] if p else [[None, None]] * len(cores)
    per_core["x"] = [q[0] for q in pos]
    per_core["y"] = [q[1] for q in pos]
    for r in RESOURCES:
        per_core[r] = [c["usage"][r] for c in cores]
    per_core["populations"] = [",".join(dict.fromkeys(s["node"] for s in c["slices"])) for c in cores]
    t = m["totals"]
    traffic = {k: t[k] for k in ("messages_per_step", "multicast_pairs", "input_messages_per_step",
                                 "synops_per_step", "spikes_per_step")}
    for k in ("hop_traffic_per_step", "initial_hop_traffic_per_step", "row_major_hop_traffic_per_step",
              "max_link_load", "host_link_load"):
        traffic[k] = p[k] if p else None
    return {
        "target": getattr(target, "name", str(target)),
        "cores": {"used": t["cores"], "chips": m["chips"], "chips_target": m["chips_target"],
                  "cores_per_chip": m["cores_per_chip"], "capacity_lower_bound": t["capacity_lower_bound"],
                  "lower_bounds": t["lower_bounds"]},
        "limits": lim,
        "utilisation": util,
        "per_core": per_core,
        "layers": m["populations"],
        "traffic": traffic,
        "placement": ({k: p[k] for k in ("initial", "seed", "moves", "temperatures", "stopped_early")}
                      if p else None),
        "energy": estimate_energy(graph, target),
        "rates": m["rates"],
        "unmapped": m["unmapped"],
    }
