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

A neuron fed through Dense paths by more distinct sources than ``input_axons_per_core``
is fed through *relay neurons* instead: its sources are cut into blocks of at most that
many (``connectivity.relay_blocks``), each block drives one relay per destination neuron
(population ``<node>.relay``), and the neuron reads one relay per block. The blocks are
recorded in ``node.meta["fan_in_relays"]`` (the Lava backend emits the relays from it)
and the relays' cores in ``node.meta["relay_cores"]``.

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

Results: ``graph.meta["mapping"]`` (saved with the graph, its traffic as arrays; see `map_cores`) and
``node.meta["cores"]`` (sorted core ids) per LIF node. ``npuc.report_mapping.mapping_report``
turns them into the report section; ``neuron_cores`` decodes per-neuron cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir import Graph
from ..ir.ops import Add, Dense, Permute, Reshape
from .base import Pass, PassContext, PassError, PassResult
from .connectivity import (
    extract_connectivity,
    insert_relays,
    max_distinct_fan_in,
    relay_blocks,
    source_rates,
)
from .packing import ORDERS, RESOURCES, Limits, Packer, core_chunks, describe_slice, neuron_cores

__all__ = ["MapCores", "map_cores", "neuron_cores", "RESOURCES", "ORDERS", "Limits"]


# -- the pass ----------------------------------------------------------------------------


def _weight_bits(graph: Graph, target: Any) -> int:
    prof = graph.profile if graph.profile is not None else target.profile
    return int(prof.weight_bits)


def map_cores(graph: Graph, target: Any, order: str = "tiled", tile: tuple[int, ...] | None = None,
              fixed_chips: bool = False, warn: Any = None, compact: bool = True) -> dict[str, Any]:
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
    shape; ``ranges`` are half-open flat (row-major) index ranges. ``compact=False`` materialises
    every synapse pair of per-token Dense layers (`extract_connectivity`); the mapping is the same.

    Raises:
        PassError: no core resources in the target, a neuron that cannot fit any
            core (naming the node and the limit), or too many chips with
            ``fixed_chips``.
    """
    t0 = time.perf_counter()
    lim = _limits(graph, target, order)
    res = target.cores
    conn = extract_connectivity(graph, compact)
    _relay_wide_fan_in(graph, conn, lim.input_axons)
    rates, provenance = source_rates(graph, conn)
    packer = Packer(conn, lim, rates, order, tile)
    topo = [p.name for p in conn.neuron_populations]
    packer.pack(topo)
    splits = packer.fix_output_axons()
    packer.renumber()
    cores = packer.cores
    out_use = packer.out_axon_usage()

    usage = _core_usage(cores, packer, lim, out_use)

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

    traffic, sums = _traffic(cores, rates, packer.core_of)

    pops_json, synops = _population_facts(graph, conn, packer, topo, rates)

    cores_json = [{"id": ci, "chip": ci // cpc,
                   "slices": [describe_slice(packer.pops[n], p0, p1) for n, p0, p1 in c.slices],
                   "usage": usage[ci]} for ci, c in enumerate(cores)]

    total_syn = conn.synapse_count()
    demand, lower = _capacity_bounds(conn, cores, lim, len(topo), total_syn)
    lif_mask = packer.core_of >= 0
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
            "messages_per_step": sums["messages"],
            "multicast_pairs": sums["pairs"],
            "input_messages_per_step": sums["input_messages"],
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
    # the graph keeps only what is deterministic (a saved build is byte-identical run to run), its
    # traffic as arrays (stored in the graph's npz: millions of pairs on large maps made graph.json
    # hundreds of MB and its encoding most of the compile time); the returned mapping stays JSON
    graph.meta["mapping"] = {k: v for k, v in mapping.items() if k != "seconds"}
    mapping["traffic"] = {k: v.tolist() for k, v in traffic.items()}
    return mapping


def _limits(graph: Graph, target: Any, order: str) -> Limits:
    """The per-core limits of ``target`` at the graph's weight width (one-line errors for bad targets)."""
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
    return lim


def _core_usage(cores: list, packer: Packer, lim: Limits, out_use: np.ndarray) -> list[dict[str, int]]:
    """Exact per-core usage, checked against every limit (the packer guarantees it)."""
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
    return usage


def _population_facts(graph: Graph, conn: Any, packer: Packer, topo: list[str], rates: np.ndarray) -> tuple[list, float]:
    """Per population: its cores, synapses and messages per step (recorded on the graph's nodes);
    and the synaptic operations per step of the whole graph."""
    cores = packer.cores
    pops_json = []
    synops = 0.0
    for name in topo:
        P = packer.pops[name]
        projs = conn.projections.get(name, [])
        for pr in projs:
            sp = conn.populations[pr.source]
            synops += pr.rate_sum(rates[sp.offset:sp.offset + sp.size])
        ids = sorted({ci for ci, c in enumerate(cores) if name in c.pops})
        msgs = 0.0
        for ci in ids:
            c = cores[ci]
            if len(c.pops) == 1:
                msgs += float(rates[c.sources].sum())
            else:  # a shared core: the sources of this population's slices only
                parts = [P.sources(p0, p1) for n, p0, p1 in c.slices if n == name]
                msgs += float(rates[packer.distinct(np.concatenate(parts))].sum())
        pops_json.append({"node": name, "shape": list(P.pop.shape), "neurons": P.pop.size,
                          "synapses": sum(pr.synapses for pr in projs), "cores": ids,
                          "tiling": P.tiling, "messages_per_step": msgs})
        if name in graph:
            graph[name].meta["cores"] = ids
        else:  # a relay population: recorded on the neuron it feeds
            graph[name.rsplit(".relay", 1)[0]].meta["relay_cores"] = ids
    return pops_json, synops


def _capacity_bounds(conn: Any, cores: list, lim: Limits, groups: int,
                     total_syn: int) -> tuple[dict[str, int], dict[str, int]]:
    """What the graph demands of each resource and the cores that bounds it to (capacity lower bounds)."""
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
              "groups": groups}
    lower = {r: -(-int(demand[r]) // lim.as_dict()[r]) for r in RESOURCES}
    return demand, lower


def _traffic(cores: list, rates: np.ndarray, core_of: np.ndarray) -> tuple[dict[str, list], dict[str, Any]]:
    """Messages between cores (src -1 = host input): per distinct (source core, destination core) pair,
    its rate-weighted messages and multicast pairs; and the totals. Swept over chunks of destination
    cores, so memory stays bounded on tens of thousands of cores."""
    n = max(len(cores), 1)
    keys, msgs, pairs = [], [], []
    total, inputs, count = 0.0, 0.0, 0
    first = 0
    for chunk in core_chunks(cores):
        src = np.concatenate([c.sources for c in chunk]).astype(np.int64)
        dst = np.repeat(np.arange(first, first + len(chunk)), [c.sources.size for c in chunk])
        first += len(chunk)
        w = rates[src]
        owner = core_of[src]
        ukey, inv = np.unique((owner + 1) * n + dst, return_inverse=True)
        keys.append(ukey)
        msgs.append(np.bincount(inv, weights=w, minlength=ukey.size))
        pairs.append(np.bincount(inv, minlength=ukey.size))
        total += float(w.sum())
        inputs += float(w[owner < 0].sum())
        count += int(src.size)
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    order = np.argsort(key, kind="stable")  # keys are distinct across chunks (their destinations differ)
    key = key[order]
    tr_msgs = np.concatenate(msgs)[order] if msgs else np.zeros(0)
    tr_pairs = np.concatenate(pairs)[order] if pairs else np.zeros(0, np.int64)
    traffic = {"src": (key // n - 1).astype(np.int64), "dst": (key % n).astype(np.int64),
               "messages": np.asarray(tr_msgs, np.float64), "pairs": np.asarray(tr_pairs, np.int64)}
    return traffic, {"messages": total, "input_messages": inputs, "pairs": count}


def _relay_wide_fan_in(graph: Graph, conn: Any, axons: int) -> None:
    """Give every neuron population fed by more distinct sources than a core has input axons relay
    neurons (``connectivity.insert_relays``) and record their blocks in ``node.meta["fan_in_relays"]``,
    which the Lava backend reads to emit them (graded relays forwarding partial sums)."""
    for pop in list(conn.neuron_populations):
        meta = graph[pop.name].meta
        meta.pop("fan_in_relays", None)
        meta.pop("relay_cores", None)
        if max_distinct_fan_in(conn, pop.name) <= axons or not _dense_paths(graph, pop.name):
            continue  # a convolution's fan-in beyond the axons stays an error (the packer names it)
        seen: dict[str, int] = {}
        for p in conn.projections[pop.name]:
            seen.setdefault(p.source, conn.populations[p.source].size)
        blocks = relay_blocks(list(seen.items()), axons)
        insert_relays(conn, pop.name, blocks)
        meta["fan_in_relays"] = {"axons": int(axons), "blocks": [[s, int(lo), int(hi)] for s, lo, hi in blocks]}


def _dense_paths(graph: Graph, name: str) -> bool:
    """Whether every synapse path into neuron ``name`` ends in a Dense (sums and reshapes between):
    the paths the Lava backend splits over relays."""
    todo = [r.node for r in graph[name].inputs]
    while todo:
        node = graph[todo.pop()]
        if isinstance(node.op, (Add, Reshape, Permute)):
            todo += [r.node for r in node.inputs]
        elif not isinstance(node.op, Dense):
            return False
    return True


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

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        m = map_cores(graph, ctx.target, self.order, self.tile, self.fixed_chips, ctx.warn)
        t = m["totals"]
        return PassResult(graph, dict(cores=t["cores"], chips=t["chips"], capacity_lower_bound=t["capacity_lower_bound"],
                     messages_per_step=round(t["messages_per_step"], 3), multicast_pairs=t["multicast_pairs"],
                     synapses=t["synapses"], rates=m["rates"]))
