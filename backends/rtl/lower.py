"""Lower a quantized graph to the RTL object model (`npuc.backends.rtl.model.Design`).

Every hardware decision is made here: which units exist, memory layouts
(lane-interleaved weights, decode ROMs that fold reshapes/permutes/padding),
and the width of every register, sized from exact integer ranges
(`npuc.backends.rtl.bounds`) so that the RTL reproduces the golden integer
engine (`npuc.sim.int_kernels`) bit for bit. Anything without a mapping raises
`RtlSupportError` naming the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...ir import Graph, ops
from ...ir.analysis import StructureError, SynapsePath, neuron_paths
from ...ir.optable import OpTable
from ...sim import lfsr
from . import lower_attention as la
from .balance import balance
from .bounds import (
    Range,
    UnboundedError,
    WidthLog,
    decay,
    fixpoint,
    overflow,
    register_range,
    unsigned_bits,
)
from .budget import BUDGET_OPTIONS
from .budget import size as size_lanes
from .model import (
    ArrayUnit,
    AttnPath,
    Design,
    EventList,
    InputUnit,
    Layer,
    MaxUnit,
    Memory,
    Path,
    PoolUnit,
    Readout,
    Unit,
)
from .pipeline import Pipeline, copy_banks, early_path, schedule
from .util import RtlSupportError, ident, vconst, words

__all__ = ["lower", "RtlSupportError", "ident", "vconst", "STATIC_MODULES"]

OVF_MODES = {"none": 0, "wrap": 1, "wrap_sym": 2, "saturate": 3, "saturate_sym": 4}
ROUNDING = {"trunc0": 0, "floor": 1, "round_half_up": 2}
RESETS = {"subtract": 0, "value": 1, "none": 2}
TIMINGS = {"same": 0, "delayed": 1, "delayed_charge": 2}
SPIKES = {"binary": 0, "ternary": 1, "multilevel": 2, "bernoulli": 3}
INPUT_KINDS = {"current": 0, "spikes": 1, "rate": 2, "bernoulli": 3, "timecode": 4, "latency": 5}
MAX_BERNOULLI_BITS = 16
STATIC_MODULES = ("npuc_ram.v", "npuc_rom.v", "npuc_ovf.v", "npuc_rshift.v", "npuc_decay.v", "npuc_lif.v",
                  "npuc_lfsr.v", "npuc_evlist.v", "npuc_evfront.v", "npuc_acc_bank.v", "npuc_wincnt.v", "npuc_syn.v",
                  "npuc_pool.v", "npuc_input.v", "npuc_acc_iter.v", "npuc_syn_post.v", "npuc_sweep.v")
"""The static building blocks in ``npuc.hdl`` (copied into every artifact)."""
PER_NEURON_DECAY_MODULES = ("npuc_vdecay.v",)
"""Added when a population's decays vary per neuron (`npuc_lif` with VEC_MU / VEC_MV multiplies by them)."""


_words = words


@dataclass
class _Pop:
    """What consumers need to know about a population's output."""

    node: str
    n: int
    shape: tuple[int, ...]
    payload: Range
    binary: bool
    delays: set[int]


# ------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """What the stage lowerings share while one graph is lowered."""

    graph: Graph
    prof: Any
    lanes: int
    layer_lanes: dict[str, int] = field(default_factory=dict)  # lanes=auto: per LIF node (else `lanes`)
    neuron_lanes: bool = True  # target option neuron_lanes: eligible layers update `lanes` neurons per cycle
    neuron_on: dict[str, int] | None = None  # lanes=auto / budgets: neuron lanes per layer (node); None: its lanes
    array: dict[str, int] | None = None  # target option array: neuron lanes of each array layer ("*": every eligible)
    array_exact: dict[str, int] = field(default_factory=dict)  # lut_budget: array layers and their neuron lanes
    pops: dict[str, _Pop] = field(default_factory=dict)
    paths_of: dict[str, list[SynapsePath]] = field(default_factory=dict)
    evlists: dict[str, EventList] = field(default_factory=dict)
    consumers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    modules: list[str] = field(default_factory=lambda: list(STATIC_MODULES))
    read_i: set[str] = field(default_factory=set)

    def use(self, modules: tuple[str, ...]) -> None:
        self.modules += [m for m in modules if m not in self.modules]


class _Stage:
    """How one kind of stage op (a neuron population or an attention unit) is lowered: its output
    population, what it reads, and its hardware. Registered in `STAGES` by op type."""

    def population(self, ctx: _Ctx, name: str) -> _Pop:
        raise NotImplementedError

    def read(self, ctx: _Ctx, name: str) -> None:
        raise NotImplementedError

    def build(self, ctx: _Ctx, name: str, k: int) -> Layer | Unit:
        raise NotImplementedError


STAGES = OpTable("stage")
"""Stage ops (each becomes one stage module), by op type."""


def lower(graph: Graph, target) -> Design:
    """Build the `Design` of a quantized graph for an FPGA target.

    Args:
        graph: quantized graph (``graph.profile`` set, integer parameters on every node).
        target: `npuc.targets.Target` (its ``fpga["lanes"]`` sets the synapse lanes).

    Raises:
        RtlSupportError: an op, option or structure without an RTL mapping.
    """
    lanes = _lanes(target)
    budget = {k: target.options[k] for k in BUDGET_OPTIONS if target is not None and target.options.get(k) is not None}
    if budget:
        if lanes not in ("auto", 1):
            opt = next(iter(budget))
            raise RtlSupportError(f"target option {opt}={budget[opt]} sizes each layer's lanes itself: drop "
                                  f"lanes={lanes} (or give lanes=auto)")
        options = {**budget, "clock_mhz": target.options.get("clock_mhz"), "array": target.options.get("array")}
        return _per_layer(graph, target, lambda one: size_lanes(graph, one, options))  # npuc.backends.rtl.budget
    if lanes == "auto":  # size each layer's lanes to the pipeline's pace (npuc.backends.rtl.balance)
        return _per_layer(graph, target, lambda one: balance(graph, one))
    return _finish(_lower(graph, target, lanes, {}), target)


def _per_layer(graph: Graph, target, sizing) -> Design:
    """Lower with one lane, size each layer's lanes from that design, lower again with them
    (attention units keep one lane)."""
    layer_lanes, neuron_on, *array_on = sizing(_finish(_lower(graph, target, 1, {}), target))
    design = _finish(_lower(graph, target, 1, layer_lanes, neuron_on, *array_on), target)
    design.lanes = max(layer_lanes.values(), default=1)
    return design


def _finish(design: Design, target) -> Design:
    """The target's structure options: the pipeline and the input format."""
    if target is not None and target.options.get("pipeline", True):
        _pipeline(design)
    if target is not None and target.options.get("input", "dense") == "events":
        _event_input(design)
    return design


def _lower(graph: Graph, target, lanes: int, layer_lanes: dict[str, int],
           neuron_on: dict[str, int] | None = None, array_on: dict[str, int] | None = None) -> Design:
    ctx = _Ctx(graph, _check_profile(graph), lanes, layer_lanes=dict(layer_lanes), neuron_on=neuron_on,
               neuron_lanes=bool(target.options.get("neuron_lanes", True)) if target is not None else True,
               array=_array_option(graph, target), array_exact=dict(array_on or {}))
    if ctx.array_exact:
        ctx.array = {**(ctx.array or {}), **ctx.array_exact}
    graph.verify()
    stage_names = [n for n in graph.topo_order() if STAGES.lookup(graph[n].op) is not None]
    if not stage_names:
        raise RtlSupportError(f"graph '{graph.name}' has no neuron (LIF) or attention population: nothing to map "
                              "to hardware")
    for node in graph.inputs():
        ctx.pops[node.name] = _input_pop(graph, node.name)
    # neurons first: an attention unit may read a later neuron's spikes through a delayed edge
    neurons_first = sorted(stage_names, key=lambda n: not isinstance(STAGES.lookup(graph[n].op), _NeuronStage))
    for name in neurons_first:
        ctx.pops[name] = STAGES.lookup(graph[name].op).population(ctx, name)
    for name in stage_names:
        STAGES.lookup(graph[name].op).read(ctx, name)
    ctx.evlists = _evlists(graph, ctx.pops)
    inputs = _inputs(graph, ctx.evlists, ctx.pops)
    ctx.read_i = _current_outputs(graph)
    ctx.consumers = {ev.ident: [] for ev in ctx.evlists.values()}
    layers = [STAGES.lookup(graph[name].op).build(ctx, name, k) for k, name in enumerate(stage_names)]
    for ev in ctx.evlists.values():
        users = ctx.consumers[ev.ident]
        ev.ra_next = bool(users) and all(getattr(layers[k], "array", None) is not None for k, _ in users)
    readouts, outputs = _readouts(graph, layers)
    top = f"npuc_{ident(graph.name)}"
    if f"{top}.v" in ctx.modules + list(la.ATTENTION_MODULES + la.SC_MODULES + la.LINEAR_MODULES):
        top += "_top"  # e.g. a graph named 'ram'
    design = Design(
        graph=graph.name, top=top, steps=graph.num_steps, profile=ctx.prof.name, lanes=ctx.lanes,
        in_w=max(i.xw for i in inputs), out_w=max(r.width for r in readouts),
        inputs=inputs, layers=layers, evlists=list(ctx.evlists.values()), readouts=readouts,
        outputs=outputs, consumers=ctx.consumers, static_modules=tuple(ctx.modules), neuron_lanes=ctx.neuron_lanes)
    return design


def _event_input(d: Design) -> None:
    """input=events: the host sends a step as a count word and one ``{value, position}`` word per
    nonzero input value, so a sparse input costs its events instead of its size."""
    dense = [u.node for u in d.inputs if u.kind_name not in ("current", "spikes")]
    if dense:
        raise RtlSupportError(f"target option input=events: input '{dense[0]}' is encoded on chip "
                              f"({next(u.kind_name for u in d.inputs if u.node == dense[0])}), which needs every "
                              "element every step; event words carry current or spikes inputs")
    if d.pipeline is None:
        raise RtlSupportError("target option input=events needs the pipelined top (pipeline=1)"
                              + (f"; {d.pipeline_note}" if d.pipeline_note else ""))
    d.input_events = True
    d.in_w = max(u.xw for u in d.inputs) + unsigned_bits(d.words_in)


def _pipeline(d: Design) -> None:
    """Schedule the stages across time steps (`npuc.backends.rtl.pipeline`): one copy of an event
    list per stage reading it, double-buffered where a later stage reads it."""
    pipe, d.pipeline_note = schedule(d)
    if pipe is None:
        return
    for ev in d.evlists:
        banks = copy_banks(pipe, ev.ident, ev.banks)
        ev.banks, ev.copy_banks = banks[0], tuple(banks[1:])
        ev.maw = max(ev.iaw, unsigned_bits(max(banks) * ev.n - 1))
    d.pipeline = pipe
    _early_paths(d, pipe)


def _early_paths(d: Design, pipe: Pipeline) -> None:
    """Mark the array layers' paths that walk the next step's list during the neuron pass, and the
    array layers whose readout reads a copy of their state by step parity (`Layer.ro_copy`)."""
    for r in d.readouts:
        if not r.probe and getattr(d.layers[r.layer], "array", None) is not None:
            d.layers[r.layer].ro_copy = True
    for lay in d.layers:
        if getattr(lay, "array", None) is not None:
            for p in lay.paths:
                p.early = early_path(d, pipe, lay.index, p)
                p.early_stage = pipe.producer[p.source.ident]


def _check_profile(graph: Graph):
    prof = graph.profile
    if prof is None:
        raise RtlSupportError(f"graph '{graph.name}' has no numeric profile: the RTL backend needs a "
                              "quantized graph (npuc compile --target fpga)")
    if prof.weight_scheme != "signed":
        raise RtlSupportError(f"profile '{prof.name}' uses weight_scheme '{prof.weight_scheme}'; the RTL "
                              "implements plain two's complement weights ('signed')")
    if prof.synapse_delay != 0:
        raise RtlSupportError(f"profile '{prof.name}' has synapse_delay={prof.synapse_delay}; the RTL runs "
                              "layers one after another within a step (synapse_delay 0)")
    return prof


def _lanes(target) -> int | str:
    lanes = target.options.get("lanes", 1) if target is not None else 1
    if lanes == "auto":
        return lanes
    lanes = int(lanes)
    if lanes < 1:
        raise RtlSupportError(f"target lanes must be >= 1, got {lanes}")
    return lanes


def _evlists(graph: Graph, pops: dict[str, _Pop]) -> dict[str, EventList]:
    """One event list per population that is read (and per Input): two banks when a delayed edge
    reads the previous step's events."""
    evlists: dict[str, EventList] = {}
    for pname, pop in pops.items():
        if not pop.delays and not isinstance(graph[pname].op, ops.Input):
            continue
        banks = 2 if 1 in pop.delays else 1
        iaw = unsigned_bits(pop.n)
        evlists[pname] = EventList(
            ident=f"u_ev_{len(evlists)}_{ident(pname)}", pop=pname, n=pop.n, iw=unsigned_bits(pop.n - 1),
            pw=max(2, pop.payload.bits), iaw=iaw, maw=max(iaw, unsigned_bits(banks * pop.n - 1)), banks=banks)
    return evlists


@STAGES.register(ops.LIF)
class _NeuronStage(_Stage):
    """A LIF population: its synapse paths (`PATHS`) and the neuron unit (`_layer`)."""

    def population(self, ctx: _Ctx, name: str) -> _Pop:
        node = ctx.graph[name]
        lo, hi = _spike_range(name, node.op, ctx.prof)
        return _Pop(name, int(np.prod(node.shape)), tuple(node.shape), Range(lo, hi),
                    node.op.spike in ("binary", "bernoulli"), set())

    def read(self, ctx: _Ctx, name: str) -> None:
        graph, pops = ctx.graph, ctx.pops
        try:
            sps = neuron_paths(graph, name)
        except StructureError as e:
            raise RtlSupportError(str(e)) from None
        for sp in sps:
            src = sp.source.node
            _check_source(graph, name, src, pops)
            if sp.weighted is not None and isinstance(graph[sp.weighted].op, la.SpikeAttention):
                for u in la.unit_inputs(graph, sp.weighted, sp.delay):
                    _check_source(graph, name, u.source, pops)
                    pops[u.source].delays.add(u.delay)
                continue
            if sp.delay > 1:
                raise RtlSupportError(f"path {' -> '.join([src, *sp.nodes])} into '{name}' has delay {sp.delay}; "
                                      "the RTL keeps one step of history (delay 0 or 1)")
            pops[src].delays.add(sp.delay)
        ctx.paths_of[name] = sps

    def build(self, ctx: _Ctx, name: str, k: int) -> Layer:
        array_nl = _array_wanted(ctx, name)
        if array_nl:
            ctx.layer_lanes[name] = ctx.pops[name].n  # one lane per neuron: an event's ROM word is its whole row
        lowered = []
        for i, sp in enumerate(ctx.paths_of[name]):
            item = _path(ctx, name, k, i, sp)
            p = item[0]
            if isinstance(p, AttnPath):
                for port, src in zip("qkv", p.gather.sources):
                    ctx.consumers[src.ident].append((k, f"p{i}{port}"))
                ctx.use(la.ATTENTION_MODULES)
            else:
                ctx.consumers[p.source.ident].append((k, f"p{i}"))
                if p.maxpool is not None:
                    ctx.use(("npuc_acc_max.v",))
            lowered.append(item)
        layer = _layer(ctx.graph, name, k, lowered, ctx.prof, ctx.evlists.get(name), ident(ctx.graph.name),
                       name in ctx.read_i)
        if layer.decay is not None:
            ctx.use(PER_NEURON_DECAY_MODULES)
        layer.array_why = _array_refusal(ctx.graph, name, ctx.paths_of[name])
        if array_nl:
            _array(ctx, layer, lowered, array_nl)
        elif ctx.neuron_lanes:
            _neuron_lanes(layer, None if ctx.neuron_on is None else ctx.neuron_on.get(name, 1))
        return layer


def _neuron_lanes(lay: Layer, want: int | None) -> None:
    """Give an eligible layer (`Layer.neuron_lanes`) its neuron lanes, ``want`` (a divisor of its
    lanes) or all its lanes: the per-neuron memories become lane matrices of ``nl`` neurons per word
    (padding lanes zero)."""
    lanes = {p.lanes for p in lay.paths}
    nl = lay.neuron_lanes(lanes.pop()) if len(lanes) == 1 else 1
    if want is not None and nl > 1:
        if nl % want:
            raise RtlSupportError(f"layer '{lay.node}': {want} neuron lanes do not divide its {nl} lanes")
        nl = min(nl, want)
    if nl <= 1:
        return
    lay.nl = nl
    for p in lay.paths:
        p.bias = _lane_matrix(p.bias, nl)
    lay.bias, lay.vmin, lay.decay = (_lane_matrix(m, nl) for m in (lay.bias, lay.vmin, lay.decay))


def _array_option(graph: Graph, target) -> dict[str, int] | None:
    """Target options ``array`` (1: every layer that can be an array; or LIF node names joined by
    ``+``) and ``array_nl`` (neurons its update walks per cycle) as ``{node or "*": nl}``."""
    opts = target.options if target is not None else {}
    want = opts.get("array", 0)
    if want in (0, "0", None):
        return None
    if want == "auto":
        if not any(opts.get(k) is not None for k in BUDGET_OPTIONS):
            raise RtlSupportError("target option array=auto lets lut_budget / bram_budget / latency_us choose array "
                                  "layers: give one of them, or array=1")
        return None
    nl = int(opts.get("array_nl", 16))
    if want in (1, "1"):
        return {"*": nl}
    names = str(want).split("+")
    for nm in names:
        if nm not in graph or not isinstance(graph[nm].op, ops.LIF):
            raise RtlSupportError(f"target option array={want}: '{nm}' is not a LIF node of graph '{graph.name}'; "
                                  "name LIF nodes joined by '+', or give array=1")
    return {nm: nl for nm in names}


def _array_wanted(ctx: _Ctx, name: str) -> int:
    """Neuron lanes of the array layer ``name`` becomes (0: today's layer). A layer named in the
    ``array`` option that cannot be an array is an error; with ``array=1`` it keeps today's layer."""
    if not ctx.array:
        return 0
    nl = ctx.array.get(name, ctx.array.get("*", 0))
    if not nl:
        return 0
    why = _array_refusal(ctx.graph, name, ctx.paths_of[name])
    if why is None:
        if name in ctx.array_exact:
            return ctx.array_exact[name]
        return array_lanes(ctx.pops[name].n, nl, max(p.n for p in ctx.pops.values()
                                                     if isinstance(ctx.graph[p.node].op, ops.LIF)))
    if name in ctx.array:
        raise RtlSupportError(f"layer '{name}' cannot be a neuron array (target option array): {why}; drop it "
                              "from the array option to keep its lane layer")
    return 0


def array_lanes(n: int, nl: int, n_max: int) -> int:
    """Neuron lanes of an array layer of ``n`` neurons at ``array_nl=nl`` when the largest layer has
    ``n_max``: a smaller layer takes as many groups as the largest one (no faster than that stage)."""
    return min(n, nl, max(2, -(-n // -(-n_max // nl))))


def _array_refusal(graph: Graph, name: str, sps: list[SynapsePath]) -> str | None:
    """Why one shared accumulator per neuron would not give the integer engine's current (the
    sharing rule, docs/rtl-backend.md), or None."""
    if graph[name].op.spike == "bernoulli":
        return "its bernoulli spikes step one LFSR per neuron in order"
    if not sps or int(np.prod(graph[name].shape)) < 2:
        return "it has no synapse path or a single neuron"
    negative = 0
    for sp in sps:
        src = sp.source.node
        wop = graph[sp.weighted].op if sp.weighted is not None else None
        if not isinstance(wop, ops.Dense) or len(sp.inputs) > 1:
            return f"its path from '{src}' is not a Dense layer (conv, attention: keep their own accumulators)"
        if len(graph[sp.weighted].shape) != 1:
            return f"its path from '{src}' applies Dense per token"
        if any(not isinstance(graph[nm].op, (ops.Reshape, ops.Permute)) for nm in sp.pre) or \
                any(not isinstance(graph[nm].op, ops.Reshape) for nm in sp.post):
            return f"its path from '{src}' pools"
        negative += bool(wop.q is not None and int(wop.q.weight_exp) < 0)
    if negative > 1:
        return "two paths shift right (negative weight_exp): floor shifts of separate sums do not add"
    return None


def _array(ctx: _Ctx, lay: Layer, lowered: list, nl: int) -> None:
    """Make a layer lowered at one lane per neuron a neuron array: the paths' weight rows in one
    ROM (each shifted to the smallest exponent), one shared accumulator as wide as the sum of
    the shifted path ranges, ``nl`` neuron lanes over the state."""
    paths = lay.paths
    e0 = min(p.exp for p in paths)
    owner = next(p.index for p in paths if p.exp == e0)
    ws = max(p.ww + p.exp - e0 for p in paths)
    bound = sum(max(-acc.lo, acc.hi) << (p.exp - e0) for p, acc, *_ in lowered)
    payloads = [ctx.pops[sp.source.node].payload for sp in ctx.paths_of[lay.node]]
    binary = all(p.binary for p in paths)
    graded = [r for p, r in zip(paths, payloads) if not p.binary] + [Range(1, 1)]
    psigned = any(r.lo < 0 for r in graded)
    pb = max(unsigned_bits(max(r.hi, 1)) for r in graded)
    smax = _pow2_payloads(graded)
    rows, bases = [], []
    for p in paths:
        w = np.asarray(p.weights.words, dtype=np.int64).reshape(p.weights.depth, -1)
        bases.append(sum(len(r) for r in rows))
        rows.append(w << (p.exp - e0))
    depth = sum(len(r) for r in rows)
    lay.array = ArrayUnit(
        rom=Memory(f"l{lay.index}_rows.hex", lay.n * ws, np.concatenate(rows)), ws=ws,
        aw=max(Range(-bound, bound).bits, ws + max(pb, max(p.pw for p in paths)) + 2), pw=max(p.pw for p in paths),
        pb=pb, psigned=psigned, binary=binary, pow2=smax is not None and not binary, smax=smax or 0, iw=max(p.iw for p in paths), eaw=max(p.eaw for p in paths),
        bases=bases, owner=owner, raw=unsigned_bits(depth - 1))
    lay.nl = nl
    for p in paths:
        p.bias = _lane_matrix(p.bias, nl)
    lay.bias, lay.vmin, lay.decay = (_lane_matrix(m, nl) for m in (lay.bias, lay.vmin, lay.decay))
    ctx.use(("npuc_array.v",))


def _pow2_payloads(ranges: list[Range]) -> int | None:
    """The largest shift ``s`` when every nonzero payload in ``ranges`` is +-2^s (events are
    nonzero; binary, ternary, signed 2-bit inputs): one shifted term per product. Else None."""
    vals = {abs(v) for r in ranges for v in range(r.lo, r.hi + 1) if v} if all(r.hi - r.lo <= 64 for r in ranges) \
        else {3}
    if any(v & (v - 1) for v in vals):
        return None
    return max(vals).bit_length() - 1


def _lane_matrix(m: Memory | None, nl: int) -> Memory | None:
    """A per-neuron image (one word, or one row of lanes, per neuron) as ``ceil(n / nl)`` words of
    ``nl`` neurons, neuron ``g * nl + j`` in lane ``j``."""
    if m is None:
        return None
    vals = np.array([int(w) for w in m.words], dtype=np.int64)[:, None] if m.words.dtype == object \
        else np.asarray(m.words, dtype=np.int64).reshape(len(m.words), -1)
    groups = -(-len(vals) // nl)
    padded = np.zeros((groups * nl, vals.shape[1]), dtype=np.int64)
    padded[:len(vals)] = vals
    return Memory(m.name, m.width * nl, padded.reshape(groups, nl * vals.shape[1]))


class _UnitStage(_Stage):
    """An attention unit (`npuc.backends.rtl.lower_attention`): reads Q, K, V through its gather."""

    modules: tuple[str, ...] = ()

    def read(self, ctx: _Ctx, name: str) -> None:
        for u in la.unit_inputs(ctx.graph, name):
            _check_source(ctx.graph, name, u.source, ctx.pops)
            ctx.pops[u.source].delays.add(u.delay)

    def unit(self, ctx: _Ctx, name: str, k: int) -> Unit:
        raise NotImplementedError

    def build(self, ctx: _Ctx, name: str, k: int) -> Unit:
        unit = self.unit(ctx, name, k)
        for port, src in zip("qkv", unit.gather.sources):
            ctx.consumers[src.ident].append((k, port))
        ctx.use(self.modules)
        return unit


@STAGES.register(la.StochasticAttention)
class _ScStage(_UnitStage):
    modules = la.SC_MODULES

    def population(self, ctx: _Ctx, name: str) -> _Pop:
        node = ctx.graph[name]
        return _Pop(name, int(np.prod(node.shape)), tuple(node.shape), Range(0, 1), True, set())

    def unit(self, ctx: _Ctx, name: str, k: int) -> Unit:
        return la.sc_unit(ctx.graph, name, k, ctx.pops, ctx.evlists, ctx.evlists.get(name), ident(ctx.graph.name))


@STAGES.register(la.LinearAttention)
class _LinearStage(_UnitStage):
    modules = la.LINEAR_MODULES

    def population(self, ctx: _Ctx, name: str) -> _Pop:
        graph, node = ctx.graph, ctx.graph[name]
        missing = [u.source for u in la.unit_inputs(graph, name) if u.source not in ctx.pops]
        if missing:
            raise RtlSupportError(f"linear attention '{name}' reads {missing} before they are computed "
                                  "(a delayed edge from a later attention unit)")
        return _Pop(name, int(np.prod(node.shape)), tuple(node.shape),
                    la.linear_output_range(graph, name, ctx.pops, ctx.prof), False, set())

    def unit(self, ctx: _Ctx, name: str, k: int) -> Unit:
        return la.linear_unit(ctx.graph, name, k, ctx.pops, ctx.evlists, ctx.evlists.get(name), ctx.prof,
                              ctx.lanes, ident(ctx.graph.name))


def _check_source(graph: Graph, stage: str, src: str, pops: dict[str, _Pop]) -> None:
    if src not in pops:
        raise RtlSupportError(f"'{stage}' reads '{src}' ({type(graph[src].op).__name__}), which is not an Input, "
                              "a neuron's spikes or an attention population")


# -- populations ----------------------------------------------------------------------------


def _spike_range(name: str, op: ops.LIF, prof) -> tuple[int, int]:
    if op.spike in ("binary", "bernoulli"):
        return 0, 1
    if op.spike == "ternary":
        return -1, 1
    if op.levels is not None:
        return 0, op.levels - 1
    vth = int(op.q.vth) << prof.vth_shift if op.q is not None else 1
    if prof.v_overflow in ("saturate", "saturate_sym", "wrap") and vth > 0:
        return 0, ((1 << (prof.v_bits - 1)) - 1) // vth
    raise RtlSupportError(f"neuron '{name}': multilevel spikes without 'levels' are bounded only by the membrane, "
                          f"and v_overflow='{prof.v_overflow}' does not bound it; set levels")


def _input_pop(graph: Graph, name: str) -> _Pop:
    op: ops.Input = graph[name].op
    n = int(np.prod(op.shape))
    kind = op.encoding.kind
    if kind in ("current", "spikes"):
        bits = _input_bits(graph, name)
        return _Pop(name, n, tuple(op.shape), register_range(bits), False, set())
    return _Pop(name, n, tuple(op.shape), Range(0, 1), True, set())


def _input_bits(graph: Graph, name: str) -> int:
    op: ops.Input = graph[name].op
    if op.q is not None:
        return int(op.q.bits)
    if op.encoding.kind == "current":
        raise RtlSupportError(f"input '{name}' has no integer parameters (q): run the quantize pass")
    return int(graph.profile.input_bits)


def _inputs(graph: Graph, evlists: dict[str, EventList], pops: dict[str, _Pop]) -> list[InputUnit]:
    out = []
    offset = 0
    steps = graph.num_steps
    for node in graph.inputs():
        op: ops.Input = node.op
        enc = op.encoding
        kind = enc.kind
        ev = evlists[node.name]
        host = {"node": node.name, "kind": kind, "shape": list(op.shape), "layout": op.layout,
                "index": op.index, "enc_bits": enc.bits, "enc_seed": enc.seed}
        if kind in ("current", "spikes"):
            xw = pw = _input_bits(graph, node.name)
            mq, lw, taps, seed = 1, 3, lfsr.primitive_taps(3), 1
            host.update(frac_bits=int(op.q.frac_bits) if op.q is not None else 0, bits=xw)
        else:
            if steps is None:
                raise RtlSupportError(f"input '{node.name}': {kind} encoding needs the graph's num_steps")
            if kind == "timecode" and steps > 62:
                raise RtlSupportError(f"input '{node.name}': timecode encoding supports at most 62 steps")
            xw = steps if kind == "timecode" else enc.bits
            pw = 2
            mq = (1 << xw) - 1
            lw, seed = enc.bits, enc.seed
            taps = lfsr.primitive_taps(lw)
            host.update(bits=xw)
        cw = max(33, (2 * ((steps or 1) + 1) * (mq + 1)).bit_length() + 2, xw + 2)
        out.append(InputUnit(
            node=node.name, ident=f"u_in_{op.index}_{ident(node.name)}", kind=INPUT_KINDS[kind], kind_name=kind,
            n=pops[node.name].n, offset=offset, xw=xw, pw=pw, iw=ev.iw, cw=cw, lw=lw, taps=taps, seed=seed,
            mq=mq, ev=ev, host=host))
        offset += pops[node.name].n
    return out


# -- synapse paths ------------------------------------------------------------------------------


PATHS = OpTable("weighted op")
"""Path lowerings that replace the synapse engine (`_synapse_path`), by weighted op type."""

PRE_OPS = OpTable("op before the weighted op")
"""Ops between a path's source and its weighted op, folded into the event decode, by op type."""

WEIGHTS = OpTable("synapse engine")
"""Weight memory and address decode of the synapse engine (`npuc_syn` KIND), by weighted op type."""

_PathResult = tuple[Path | AttnPath, Range, Range, int, str]


@dataclass
class _PathIn:
    """A synapse path's input as the ops before its weighted op reshape it: ``arr`` maps the
    weighted op's input positions to event indices of the list the engine reads."""

    where: str
    arr: np.ndarray
    payload: Range
    binary: bool
    source_ev: EventList
    k: int
    i: int
    pool: PoolUnit | None = None
    iw: int = 0
    eaw: int = 0
    pw: int = 0


def _path(ctx: _Ctx, lif: str, k: int, i: int, sp: SynapsePath) -> _PathResult:
    """The path's hardware plus what the neuron side needs for widths: the accumulator range,
    the synapse bias range and the convolution overflow rule."""
    where = f"path {i} ({' -> '.join([sp.source.node, *sp.nodes, lif])})"
    rule = PATHS.lookup(ctx.graph[sp.weighted].op) if sp.weighted is not None else None
    return (rule or _synapse_path)(ctx, lif, k, i, sp, where)


@PATHS.register(la.SpikeAttention)
def _attention_path(ctx: _Ctx, lif: str, k: int, i: int, sp: SynapsePath, where: str) -> _PathResult:
    return la.attn_path(ctx.graph, lif, k, i, sp, ctx.pops, ctx.evlists, ctx.lanes)


@PRE_OPS.register(ops.Reshape)
def _pre_reshape(graph: Graph, name: str, op: ops.Reshape, x: _PathIn) -> None:
    x.arr = x.arr.reshape(graph[name].shape)


@PRE_OPS.register(ops.Permute)
def _pre_permute(graph: Graph, name: str, op: ops.Permute, x: _PathIn) -> None:
    x.arr = x.arr.transpose(op.dims)


@PRE_OPS.register(ops.SumPool2d, ops.MaxPool2d)
def _pre_pool(graph: Graph, name: str, op, x: _PathIn) -> None:
    if x.pool is not None:
        raise RtlSupportError(f"{x.where}: two pooling ops in one path ('{x.pool.nodes[0]}', '{name}')")
    pool = x.pool = _pool(graph, name, x.arr, x.payload, x.binary, x.source_ev, x.k, x.i)
    x.arr = np.arange(pool.nq).reshape(graph[name].shape)
    area = _area(op)
    x.payload = Range(0, 1) if pool.is_or else Range(min(0, x.payload.lo * area), max(0, x.payload.hi * area))
    x.iw, x.eaw, x.pw = pool.qw, pool.qcw, pool.pw


def _path_input(ctx: _Ctx, k: int, i: int, sp: SynapsePath, where: str) -> _PathIn:
    """Fold the ops before the weighted op (`PRE_OPS`); the ones after it are `_post_maxpool`'s."""
    graph = ctx.graph
    src = ctx.pops[sp.source.node]
    ev = ctx.evlists[sp.source.node]
    x = _PathIn(where, np.arange(src.n).reshape(src.shape), src.payload, src.binary, ev, k, i, iw=ev.iw,
                eaw=ev.iaw, pw=ev.pw)
    for name in sp.pre:
        op = graph[name].op
        rule = PRE_OPS.lookup(op)
        if rule is None:
            raise RtlSupportError(f"{where}: '{name}' ({type(op).__name__}) before the weighted op has no RTL "
                                  "mapping (supported: Reshape, Permute, SumPool2d, MaxPool2d of binary spikes)")
        rule(graph, name, op, x)
    return x


def _post_maxpool(graph: Graph, sp: SynapsePath, wop, where: str) -> str | None:
    """The MaxPool2d after the weighted op, if any: one, right after a Conv2d (the neuron reads the
    max of each window's currents, `npuc_acc_max`). Any other op after it must be a Reshape."""
    maxpool = None
    for name in sp.post:
        op = graph[name].op
        if isinstance(op, ops.MaxPool2d) and isinstance(wop, ops.Conv2d) and name == sp.post[0] and len(sp.post) == 1:
            maxpool = name
        elif not isinstance(op, ops.Reshape):
            raise RtlSupportError(f"{where}: '{name}' ({type(op).__name__}) between the weighted op and the neuron "
                                  "has no RTL mapping (supported: Reshape, a MaxPool2d of a Conv2d's currents read "
                                  "by the neuron)")
    return maxpool


def _synapse_path(ctx: _Ctx, lif: str, k: int, i: int, sp: SynapsePath, where: str) -> _PathResult:
    """A synapse path on `npuc_syn` (dense, token-wise dense or conv weights, `WEIGHTS`)."""
    graph, prof, lanes = ctx.graph, ctx.prof, ctx.layer_lanes.get(lif, ctx.lanes)
    if sp.weighted is None:
        raise RtlSupportError(f"{where} has no weighted op; run the legalize pass (it inserts an identity)")
    if len(sp.inputs) > 1:
        raise RtlSupportError(f"{where}: ops with several spike inputs have no RTL template")
    x = _path_input(ctx, k, i, sp, where)
    arr, pool = x.arr, x.pool
    wname = sp.weighted
    wop = graph[wname].op
    maxpool = _post_maxpool(graph, sp, wop, where)
    if maxpool is not None:
        lanes = 1  # the max unit walks one lane of accumulators
    q = wop.q
    if q is None:
        raise RtlSupportError(f"weighted op '{wname}' has no integer parameters: run the quantize pass")
    wlo, whi = prof.weight_range("mixed")
    w = np.asarray(q.weight, dtype=np.int64)
    if w.size and (w.min() < wlo or w.max() > whi):
        raise RtlSupportError(f"weighted op '{wname}': integer weights span [{w.min()}, {w.max()}], outside the "
                              f"profile's {prof.weight_bits}-bit range [{wlo}, {whi}]")
    ww = prof.weight_bits
    pw = max(2, x.pw)
    n_lif = ctx.pops[lif].n
    out_n = int(np.prod(graph[maxpool or wname].shape))
    if out_n != n_lif:
        raise RtlSupportError(f"{where}: '{wname}' produces {out_n} values for {n_lif} neurons")
    inv = np.empty(arr.size, dtype=np.int64)
    inv[arr.reshape(-1)] = np.arange(arr.size)  # event index -> flat input position of the weighted op
    engine = WEIGHTS.lookup(wop)
    if engine is None:
        raise RtlSupportError(f"weighted op '{wname}' ({type(wop).__name__}) has no RTL engine")
    d = engine(graph, wname, wop, w, arr, inv, lanes, ww, k, i)
    d["weights"].name = f"l{k}_p{i}_w.hex"
    bound = d["fan_in"] * max(abs(wlo), abs(whi)) * x.payload.mag
    acc = Range(-bound, bound)
    aw = max(acc.bits, ww + pw + 1)
    bias_mem, bias_r, bw = _path_bias(q, acc, d, k, i)
    is_conv = d["kind"] == 1
    ovf_bits = prof.conv_acc_bits if is_conv else 0
    ovf_mode = prof.conv_acc_overflow if is_conv and ovf_bits else "none"
    iter_p = d["P"]
    max_unit = None
    if maxpool is not None:
        if ovf_mode not in ("none", "saturate", "saturate_sym"):
            raise RtlSupportError(f"{where}: max pool '{maxpool}' after a convolution that {ovf_mode}s at {ovf_bits} "
                                  "bits: the max commutes only with a non-decreasing overflow rule")
        max_unit = _max_unit(graph, maxpool, wname, k, i)
        iter_p = int(np.prod(graph[maxpool].shape[1:]))
    iter_nw = unsigned_bits(max(iter_p, d["cg"], lanes, d["adepth"] + d["kc"] * iter_p)) + 1
    return Path(
        index=i, source=x.source_ev, delay=sp.delay, pool=pool, weighted=wname, nodes=list(sp.nodes),
        kind=d["kind"], lanes=lanes, ww=ww, pw=pw, binary=x.binary and (pool is None or pool.is_or),
        aw=aw, iw=x.iw, eaw=x.eaw, weights=d["weights"], waw=unsigned_bits(d["weights"].depth - 1),
        adepth=d["adepth"], aaw=unsigned_bits(d["adepth"] - 1), kc=d["kc"], kcb=unsigned_bits(d["kc"]),
        cg=d["cg"], conv=d.get("conv", {}), decode=d.get("decode"), decode_aw=unsigned_bits(arr.size - 1),
        exp=int(q.weight_exp), bias=bias_mem, bw=bw, ovf_bits=max(2, ovf_bits), ovf_mode=OVF_MODES[ovf_mode],
        iter_p=iter_p, iter_nw=iter_nw, chw=unsigned_bits(d["channels"] - 1),
        fanout=d["fanout"], fanout_synapses=d["synapses"], bias_delayed=bias_mem is not None and sp.post_delay > 0,
        maxpool=max_unit,
    ), acc, bias_r, ovf_bits, ovf_mode


def _max_unit(graph: Graph, name: str, conv: str, k: int, i: int) -> MaxUnit:
    """The window taps of every pooled neuron (CHW order) as accumulator addresses of a one-lane conv
    engine (``word = (co * OH + y) * OW + x``); taps in the pool's padding are invalid (its -inf)."""
    op = graph[name].op
    co, oh, ow = graph[conv].shape
    _, ph, pw = graph[name].shape
    (kh, kw), (sh, sw), (pah, paw) = op.kernel, op.stride, op.padding
    c, y0, x0, u, v = np.meshgrid(np.arange(co), np.arange(ph) * sh - pah, np.arange(pw) * sw - paw,
                                  np.arange(kh), np.arange(kw), indexing="ij")
    y, x = y0 + u, x0 + v
    valid = (y >= 0) & (y < oh) & (x >= 0) & (x < ow)
    addr = np.where(valid, (c * oh + np.clip(y, 0, oh - 1)) * ow + np.clip(x, 0, ow - 1), 0).reshape(-1)
    aaw = unsigned_bits(co * oh * ow - 1)
    taps = (valid.reshape(-1).astype(np.int64) << aaw) | addr
    rom = Memory(f"l{k}_p{i}_maxtaps.hex", aaw + 1, _words(int(w) for w in taps))
    return MaxUnit(name, rom, unsigned_bits(len(taps) - 1), co * ph * pw, kh * kw)


def _path_bias(q, acc: Range, d: dict, k: int, i: int) -> tuple[Memory | None, Range, int]:
    """The synapse bias memory (one entry per neuron), its range and width."""
    bias_vals = np.asarray(q.bias, dtype=np.int64) if q.bias is not None else None
    bias_r = Range(0, 0)
    if bias_vals is not None:
        # as wide as the path's shifted accumulator (structural), or wider if the data needs it
        bias_r = acc.shift(int(q.weight_exp)).hull(Range(int(bias_vals.min()), int(bias_vals.max())))
    bw = max(2, bias_r.bits)
    bias_mem = None
    if bias_vals is not None and d.get("tokens"):
        bias_vals = np.tile(bias_vals, d["tokens"])  # one entry per neuron (the iterator counts neurons)
    if bias_vals is not None:
        mask = (1 << bw) - 1
        bias_mem = Memory(f"l{k}_p{i}_bias.hex", bw, _words(int(b) & mask for b in bias_vals))
    return bias_mem, bias_r, bw


def _area(op) -> int:
    return int(op.kernel[0] * op.kernel[1])


@WEIGHTS.register(ops.Dense)
def _dense(graph: Graph, name: str, op: ops.Dense, w: np.ndarray, arr: np.ndarray, inv: np.ndarray, lanes: int, ww: int,
           k: int, i: int) -> dict:
    n_out, n_in = w.shape
    kc = -(-n_out // lanes)
    padded = np.zeros((kc * lanes, n_in), dtype=np.int64)
    padded[:n_out] = w
    if arr.ndim > 1:
        return _token_dense(padded, arr, inv, lanes, ww, kc, n_out, k, i)
    # word e * KC + c holds rows c * L .. c * L + L - 1 of event e's column
    rows = padded[:, inv].reshape(kc, lanes, n_in).transpose(2, 0, 1).reshape(-1, lanes)
    return {"kind": 0, "weights": Memory("", lanes * ww, rows), "adepth": kc, "kc": kc, "cg": n_out,
            "P": 1, "channels": n_out, "fan_in": n_in, "fanout": float(kc), "synapses": float(n_out)}


def _token_dense(padded: np.ndarray, arr: np.ndarray, inv: np.ndarray, lanes: int, ww: int, kc: int, n_out: int,
                 k: int, i: int) -> dict:
    """Dense applied to every token of a ``(..., features)`` input (same matrix per token): the
    engine's KIND 2. Weights ``[f * KC + c]``; a decode ROM gives each event its {token, feature}
    (folding the Reshape/Permute ops before the layer); accumulators ``[t * KC + c]``, so neuron
    ``t * n_out + o`` sits at lane ``o mod L`` like ``tokens`` dense groups."""
    n_in = arr.shape[-1]
    tokens = arr.size // n_in
    rows = padded.reshape(kc, lanes, n_in).transpose(2, 0, 1).reshape(-1, lanes)  # word f * KC + c
    featb, tokb = unsigned_bits(n_in - 1), unsigned_bits(tokens - 1)
    dec = []
    for e in range(arr.size):
        t, f = divmod(int(inv[e]), n_in)
        dec.append(f | (t << featb))
    return {"kind": 2, "weights": Memory("", lanes * ww, rows), "adepth": tokens * kc, "kc": kc,
            "cg": n_out, "P": 1, "channels": tokens * n_out, "fan_in": n_in, "conv": {"TOKB": tokb, "FEATB": featb},
            "decode": Memory(f"l{k}_p{i}_decode.hex", tokb + featb, _words(dec)), "tokens": tokens,
            "fanout": float(kc), "synapses": float(n_out)}


def _taps(size: int, k: int, s: int, p: int, d: int, out: int, what: str):
    """Per input coordinate: (first tap, first output, count) of the kernel taps that reach an output."""
    g = math.gcd(s, d)
    ustep, istep = s // g, d // g
    rows = []
    for y in range(size):
        taps = [(u, (y + p - d * u) // s) for u in range(k)
                if (y + p - d * u) % s == 0 and 0 <= (y + p - d * u) // s < out]
        for (u1, i1), (u2, i2) in zip(taps, taps[1:]):
            if u2 - u1 != ustep or i1 - i2 != istep:
                raise RtlSupportError(f"{what}: kernel taps do not form an arithmetic progression")
        rows.append((taps[0][0], taps[0][1], len(taps)) if taps else (0, 0, 0))
    return rows, ustep, istep


@WEIGHTS.register(ops.Conv2d, ops.Conv1d)
def _conv(graph: Graph, name: str, op, w: np.ndarray, arr: np.ndarray, inv: np.ndarray, lanes: int, ww: int,
          k: int, i: int) -> dict:
    if isinstance(op, ops.Conv1d):
        w = w[:, :, None, :]
        stride, pad, dil = (1, op.stride[0]), (0, op.padding[0]), (1, op.dilation[0])
        arr = arr.reshape(arr.shape[0], 1, arr.shape[1])
        oshape = graph[name].shape
        oh, ow = 1, oshape[1]
    else:
        stride, pad, dil = op.stride, op.padding, op.dilation
        oh, ow = graph[name].shape[1:]
    co, cig, kh, kw = w.shape
    c, h, wd = arr.shape
    groups = op.groups
    cg = co // groups
    kc = -(-cg // lanes)
    rows_y, ustep, istep = _taps(h, kh, stride[0], pad[0], dil[0], oh, f"conv '{name}'")
    rows_x, vstep, jstep = _taps(wd, kw, stride[1], pad[1], dil[1], ow, f"conv '{name}'")
    gb, cib = unsigned_bits(groups - 1), unsigned_bits(cig - 1)
    kb = unsigned_bits(max(kh, kw) - 1)
    ob = unsigned_bits(max(oh, ow) - 1)
    nb = unsigned_bits(max(max(r[2] for r in rows_y), max(r[2] for r in rows_x)))
    # decode word of event e: {g, ci, u0, i0, nu, v0, j0, nv}, first field lowest
    cc, y, x = np.unravel_index(np.asarray(inv, dtype=np.int64), arr.shape)
    g, ci = np.divmod(cc, cig)
    (u0, i0, nu), (v0, j0, nv) = np.asarray(rows_y, dtype=np.int64)[y].T, np.asarray(rows_x, dtype=np.int64)[x].T
    dec = [0] * arr.size if gb + cib + 2 * kb + 2 * ob + 2 * nb > 62 else np.zeros(arr.size, dtype=np.int64)
    sh = 0
    for val, bits in [(g, gb), (ci, cib), (u0, kb), (i0, ob), (nu, nb), (v0, kb), (j0, ob), (nv, nb)]:
        if isinstance(dec, list):  # wider than int64 (never seen; kept exact)
            dec = [d | (int(v) << sh) for d, v in zip(dec, val)]
        else:
            dec |= val << sh
        sh += bits
    taps = nu * nv
    fan = np.where(taps > 0, taps * kc, 1)
    syn = taps * cg
    padded = np.zeros((groups, kc * lanes, cig, kh, kw), dtype=np.int64)
    padded[:, :cg] = w.reshape(groups, cg, cig, kh, kw)
    # word ((((g * KC + c) * CIG + ci) * KH + u) * KW + v) holds output channels c * L .. c * L + L - 1
    rows = padded.reshape(groups, kc, lanes, cig, kh, kw).transpose(0, 1, 3, 4, 5, 2).reshape(-1, lanes)
    conv = {"GB": gb, "CIB": cib, "KB": kb, "OB": ob, "NB": nb, "CIG": cig, "KH": kh, "KW": kw, "OH": oh,
            "OW": ow, "USTEP": ustep, "ISTEP": istep, "VSTEP": vstep, "JSTEP": jstep}
    rw = gb + cib + 2 * kb + 2 * ob + 2 * nb
    return {"kind": 1, "weights": Memory("", lanes * ww, rows), "adepth": groups * kc * oh * ow,
            "kc": kc, "cg": cg, "P": oh * ow, "channels": co, "fan_in": cig * kh * kw, "conv": conv,
            "decode": Memory(f"l{k}_p{i}_decode.hex", rw, _words(dec) if isinstance(dec, list) else dec),
            "fanout": float(np.mean(fan)), "synapses": float(np.mean(syn))}


def _pool(graph: Graph, name: str, arr: np.ndarray, payload: Range, binary: bool, src: EventList,
          k: int, i: int) -> PoolUnit:
    op = graph[name].op
    is_or = isinstance(op, ops.MaxPool2d)
    if is_or and not binary:
        raise RtlSupportError(f"max pool '{name}' pools non-binary values; the RTL max pool is an OR of binary spikes")
    if arr.ndim != 3:
        raise RtlSupportError(f"pool '{name}' needs a (C, H, W) input, got {arr.shape}")
    c, h, w = arr.shape
    _, oh, ow = graph[name].shape
    (kh, kw), (sh, sw), (ph, pw_) = op.kernel, op.stride, op.padding

    def windows(size, k_, s, p, out):
        rows = []
        for y in range(size):
            o = [oy for oy in range(out) if oy * s - p <= y < oy * s - p + k_]
            rows.append((o[0], len(o)) if o else (0, 0))
        return rows

    ry, rx = windows(h, kh, sh, ph, oh), windows(w, kw, sw, pw_, ow)
    nq = c * oh * ow
    qw = unsigned_bits(nq - 1)
    nyb = unsigned_bits(max(r[1] for r in ry))
    nxb = unsigned_bits(max(r[1] for r in rx))
    inv = np.empty(arr.size, dtype=np.int64)
    inv[arr.reshape(-1)] = np.arange(arr.size)
    words = []
    wins = []
    for e in range(arr.size):
        cc, y, x = np.unravel_index(int(inv[e]), arr.shape)
        oy0, ny = ry[y]
        ox0, nx = rx[x]
        w0 = (int(cc) * oh + oy0) * ow + ox0 if ny and nx else 0
        words.append(w0 | (ny << qw) | (nx << (qw + nyb)))
        wins.append(ny * nx)
    area = kh * kw
    out = Range(0, 1) if is_or else Range(min(0, payload.lo * area), max(0, payload.hi * area))
    return PoolUnit(
        nodes=[name], is_or=is_or, pwi=src.pw, pw=max(2, out.bits), iw=src.iw, eaw=src.iaw, qw=qw, nq=nq,
        qaw=qw, qcw=unsigned_bits(nq), rom=Memory(f"l{k}_p{i}_pool.hex", qw + nyb + nxb, _words(words)),
        rom_aw=src.iw, nyb=nyb, nxb=nxb, owp=ow, windows_per_event=float(np.mean(wins)))


# -- neurons -----------------------------------------------------------------------------------


@dataclass
class _NeuronConsts:
    """A LIF population's integer constants at the profile's scales, and their ranges."""

    mu: int | np.ndarray  # current decay multiplier (decay_unity - du); per neuron (flat) when it varies
    mv: int | np.ndarray  # membrane decay multiplier, likewise
    vth: int
    vth_lo: int  # ternary negative threshold (-1: none)
    rv: int  # reset value
    bias_vals: np.ndarray  # per neuron, shifted by bias_exp
    bias_r: Range
    vmin_vals: np.ndarray | None
    vmin_r: Range | None
    s_r: Range  # spike payload range


def _layer(graph: Graph, name: str, k: int, lowered: list, prof, ev: EventList | None, gident: str,
           keep_u: bool) -> Layer:
    """The neuron unit of a LIF population (`npuc_lif` behind its synapse paths)."""
    node = graph[name]
    op: ops.LIF = node.op
    q = op.q
    if q is None:
        raise RtlSupportError(f"neuron '{name}' has no integer parameters: run the quantize pass")
    shape = tuple(node.shape)
    n = int(np.prod(shape))
    log = WidthLog()
    a_range = _input_current_range(lowered, log)
    nc = _neuron_consts(name, op, prof, shape)
    u_r = _u_range(name, op, prof, nc, a_range, log)
    v_r, h_r = _v_range(name, op, prof, nc, u_r, log)
    div_m, div_k = _multilevel_divider(op, nc.vth, h_r, log)
    dmin_mem, dmin_w, lfsr_cfg = None, 2, None
    if op.spike == "bernoulli":
        dmin_vals, dmin_r = _bernoulli_table(name, op, h_r, nc.vth)
        dmin_w = dmin_r.bits
        log.see(dmin_r, h_r - Range(nc.vth, nc.vth))
        mask = (1 << dmin_w) - 1
        dmin_mem = Memory(f"l{k}_dmin.hex", dmin_w, _words(int(v) & mask for v in dmin_vals))
        lfsr_cfg = {"width": op.bits, "taps": lfsr.primitive_taps(op.bits), "seed": op.seed}
    cw = log.bits + 2

    store_u = bool(np.any(nc.mu != 0)) or keep_u or op.charge == "previous"  # the alpha neuron charges with the stored u
    sw, vw = max(2, nc.s_r.bits), max(2, v_r.bits)
    uw = max(2, u_r.bits) if store_u else 0
    bias_w = max(2, nc.bias_r.bits)
    bias_mem = None
    if q.bias_mant.size > 1:
        mask = (1 << bias_w) - 1
        bias_mem = Memory(f"l{k}_bias.hex", bias_w, _words(int(b) & mask for b in nc.bias_vals.reshape(-1)))
    vmin_mem, vmin_const, vmin_w = None, None, 2
    if nc.vmin_vals is not None:
        vmin_w = max(2, nc.vmin_r.bits)
        if q.v_min.size > 1:
            mask = (1 << vmin_w) - 1
            vmin_mem = Memory(f"l{k}_vmin.hex", vmin_w, _words(int(b) & mask for b in nc.vmin_vals.reshape(-1)))
        else:
            vmin_const = int(nc.vmin_vals.reshape(-1)[0])
    decay_mem, decay_w, decay_vec = _decay_rom(nc, k)
    lid = f"l{k}_{ident(name)}"
    return Layer(
        index=k, node=name, ident=lid, module=f"npuc_{gident}_{lid}"[:60], n=n, shape=shape,
        paths=[p for p, *_ in lowered], lif=_lif_params(op, prof, nc, cw, div_m, div_k, (u_r, v_r)), cw=cw, sw=sw, vw=vw,
        uw=uw, naw=unsigned_bits(n - 1), bias=bias_mem, bias_const=int(nc.bias_vals.reshape(-1)[0]),
        bias_w=bias_w, vmin=vmin_mem, vmin_const=vmin_const, vmin_w=vmin_w, dmin=dmin_mem, dmin_w=dmin_w,
        lfsr=lfsr_cfg, ev=ev, spike=op.spike, decay=decay_mem, decay_w=decay_w, decay_vec=decay_vec)


def _multiplier(d, offset: int, d_unity: int, shape: tuple[int, ...]) -> int | np.ndarray:
    """A decay multiplier ``decay_unity - (d + offset)``: one int, or the flat per-neuron values."""
    if isinstance(d, np.ndarray):
        return (d_unity - (np.broadcast_to(d, shape).astype(np.int64) + offset)).reshape(-1)
    return d_unity - (d + offset)


def _mult_range(m: int | np.ndarray) -> int | Range:
    return Range(int(m.min()), int(m.max())) if isinstance(m, np.ndarray) else m


def _decay_rom(nc: _NeuronConsts, k: int) -> tuple[Memory | None, int, tuple[str, ...]]:
    """Per-neuron decays: a ROM of lane words ``{mu, mv}`` (only the varying ones, mv in lane 0),
    ``decay_w`` bits per lane (signed, as `npuc_vdecay` reads them), and which lanes it holds."""
    vec = tuple(f for f, m in (("mv", nc.mv), ("mu", nc.mu)) if isinstance(m, np.ndarray))
    if not vec:
        return None, 2, ()
    cols = [getattr(nc, f) for f in vec]
    w = max(2, *(Range(int(c.min()), int(c.max())).bits for c in cols))
    return Memory(f"l{k}_decay.hex", w * len(vec), np.stack(cols, axis=1)), w, vec  # lane matrix


def _input_current_range(lowered: list, log: WidthLog) -> Range:
    """The summed current of the paths (after each path's shift, bias and overflow rule)."""
    a_range = Range(0, 0)
    for p, acc, bias_r, ovf_bits, ovf_mode in lowered:
        x = overflow(acc.shift(p.exp) + bias_r, ovf_bits, ovf_mode)
        log.see(acc, acc.shift(p.exp), acc.shift(p.exp) + bias_r, x)
        log.see_bits(p.aw + max(p.exp, 0) + 1)
        log.see_bits(p.bw)
        if isinstance(p, AttnPath):
            log.see_bits(p.post_bits)
        a_range = a_range + x
        log.see(a_range)
    return a_range


def _neuron_consts(name: str, op: ops.LIF, prof, shape: tuple[int, ...]) -> _NeuronConsts:
    q = op.q
    d_unity = prof.decay_unity
    # Widths come from the profile's ranges (so new parameters fit the same hardware), widened
    # if the data exceeds them.
    bias_vals = _shift_array(np.broadcast_to(np.asarray(q.bias_mant, dtype=np.int64), shape), q.bias_exp)
    bias_r = register_range(prof.bias_mant_bits).shift(q.bias_exp).hull(Range(int(bias_vals.min()), int(bias_vals.max())))
    vmin_vals = None if q.v_min is None else np.broadcast_to(np.asarray(q.v_min, dtype=np.int64), shape)
    vmin_r = None
    if vmin_vals is not None:
        vmin_r = register_range(prof.v_bits).hull(Range(int(vmin_vals.min()), int(vmin_vals.max())))
    s_lo, s_hi = _spike_range(name, op, prof)
    return _NeuronConsts(
        mu=_multiplier(q.du, prof.du_offset, d_unity, shape), mv=_multiplier(q.dv, prof.dv_offset, d_unity, shape),
        vth=int(q.vth) << prof.vth_shift,
        vth_lo=(int(q.vth_lo) << prof.vth_shift) if q.vth_lo is not None else -1, rv=int(q.reset_value),
        bias_vals=bias_vals, bias_r=bias_r, vmin_vals=vmin_vals, vmin_r=vmin_r, s_r=Range(s_lo, s_hi))


def _u_range(name: str, op: ops.LIF, prof, nc: _NeuronConsts, a_range: Range, log: WidthLog) -> Range:
    """The fixpoint range of the current state u (every intermediate goes to ``log``)."""
    rounding, db, arith = prof.decay_rounding, prof.decay_bits, prof.arith_bits
    a1 = overflow(a_range, prof.act_bits, prof.act_overflow)
    ash = a1.shift(prof.act_shift)
    log.see(a1, ash)
    for bits in (prof.act_bits, arith, prof.u_bits, prof.v_bits):
        log.see_bits(bits + 2)

    def u_update(u: Range) -> Range:
        dec, prod = decay(u, _mult_range(nc.mu), db, rounding)
        u0 = dec + ash
        u1 = overflow(u0, arith, "wrap")
        out = overflow(u1, prof.u_bits, prof.u_overflow)
        log.see(u, prod, dec, u0, u1, out)
        return out

    try:
        return fixpoint(Range(0, 0), u_update, f"neuron '{name}': the current state u")
    except UnboundedError as e:
        raise RtlSupportError(f"{e} (u_overflow='{prof.u_overflow}', arith_bits={arith})") from None


def _v_range(name: str, op: ops.LIF, prof, nc: _NeuronConsts, u_r: Range, log: WidthLog) -> tuple[Range, Range]:
    """The fixpoint range of the membrane v, and of h (v before the reset) at that fixpoint."""
    rounding, db, arith = prof.decay_rounding, prof.decay_bits, prof.arith_bits
    vth, vth_lo, rv, vmin_r = nc.vth, nc.vth_lo, nc.rv, nc.vmin_r
    if op.spike == "ternary":
        amt = Range.of(0, vth, vth_lo)
    elif op.spike == "multilevel":
        amt = nc.s_r * Range(vth, vth)
    else:
        amt = Range.of(0, vth)
    delayed_value = op.reset_timing == "delayed" and op.reset == "value"
    charge_value = op.reset_timing == "delayed_charge" and op.reset == "value"
    delayed_sub = op.reset_timing != "same" and op.reset == "subtract"
    h_seen: list[Range] = []

    def v_update(v: Range) -> Range:
        vp = v.hull(Range(rv, rv)) if delayed_value else v
        dec, prod = decay(vp, _mult_range(nc.mv), db, rounding)
        h0 = dec + u_r + nc.bias_r
        h1 = overflow(h0, arith, "wrap")
        h2 = h1 - amt if delayed_sub else h1
        h3 = h2.hull(Range(rv, rv)) if charge_value else h2
        h = overflow(h3, prof.v_bits, prof.v_overflow)
        if op.reset_timing == "same" and op.reset == "subtract":
            v0 = _subtract_range(op, h, vth, vth_lo, amt)
        elif op.reset_timing == "same" and op.reset == "value":
            v0 = h.hull(Range(rv, rv))
        else:
            v0 = h
        out = v0.vmax(vmin_r) if vmin_r is not None else v0
        log.see(v, vp, prod, dec, h0, h1, h2, h3, h, v0, out, amt, h - Range.of(vth, vth_lo))
        h_seen.append(h)
        return out

    v_init = int(op.q.v_init)
    try:
        v_r = fixpoint(Range(v_init, v_init), v_update, f"neuron '{name}': the membrane v")
    except UnboundedError as e:
        raise RtlSupportError(f"{e} (v_overflow='{prof.v_overflow}', arith_bits={arith})") from None
    h_seen.clear()
    v_update(v_r)
    log.see(Range.of(rv, v_init, vth, vth_lo))
    if vmin_r is not None:
        log.see(vmin_r)
    log.see(nc.bias_r)
    return v_r, h_seen[-1]


def _multilevel_divider(op: ops.LIF, vth: int, h_r: Range, log: WidthLog) -> tuple[int, int]:
    """``floor(h / vth) = (h * m) >> k`` for the multilevel spike count (m = 1 for a power of two)."""
    div_m, div_k = 1, 0
    if op.spike == "multilevel":
        hmax = max(0, h_r.hi)
        if vth & (vth - 1) == 0:
            div_k = vth.bit_length() - 1
        else:
            div_k = hmax.bit_length() + vth.bit_length()
            div_m = -(-(1 << div_k) // vth)
        log.see(Range(0, hmax * div_m))
    return div_m, div_k


def _lif_params(op: ops.LIF, prof, nc: _NeuronConsts, cw: int, div_m: int, div_k: int,
                ranges: tuple[Range, Range]) -> dict[str, str]:
    """The `npuc_lif` parameters."""

    def mode_bits(bits: int, mode: str) -> tuple[int, int]:
        return (bits, OVF_MODES[mode]) if bits and mode != "none" else (2, 0)

    act = mode_bits(prof.act_bits, prof.act_overflow)
    ar = mode_bits(prof.arith_bits, "wrap")
    um = mode_bits(prof.u_bits, prof.u_overflow)
    vm = mode_bits(prof.v_bits, prof.v_overflow)
    return {
        "W": str(cw), "DECAY_BITS": str(prof.decay_bits), "ROUND": str(ROUNDING[prof.decay_rounding]),
        "ACT_BITS": str(act[0]), "ACT_MODE": str(act[1]), "ACT_SHIFT": str(prof.act_shift),
        "ARITH_BITS": str(ar[0]), "ARITH_MODE": str(ar[1]),
        "U_BITS": str(um[0]), "U_MODE": str(um[1]), "V_BITS": str(vm[0]), "V_MODE": str(vm[1]),
        "RESET": str(RESETS[op.reset]), "TIMING": str(TIMINGS[op.reset_timing]),
        "CHARGE": str(1 if op.charge == "previous" else 0),
        "COMPARE": str(1 if op.compare == "ge" else 0), "SPIKE": str(SPIKES[op.spike]),
        "HAS_LMAX": str(1 if op.spike == "multilevel" and op.levels is not None else 0), "DIV_K": str(div_k),
        "HAS_VMIN": str(1 if nc.vmin_vals is not None else 0),
        "VTH": vconst(nc.vth, cw), "VTH_LO": vconst(nc.vth_lo, cw), "RESET_VALUE": vconst(nc.rv, cw),
        "V_INIT": vconst(int(op.q.v_init), cw), "DIV_M": vconst(div_m, cw),
        "LMAX": vconst((op.levels - 1) if op.levels else 0, cw), **_decay_params(nc, cw, *ranges, int(op.q.v_init), prof.decay_bits),
    }


def _decay_params(nc: _NeuronConsts, cw: int, u_r: Range, v_r: Range, v_init: int, db: int) -> dict[str, str]:
    """MU, MV (constants; 0 where the decay ROM supplies them) and, per-neuron, `npuc_lif`'s MW, VEC_MU,
    VEC_MV and the decayed operands' widths XU (u_prev or 0), XV (v_prev, V_INIT or RESET_VALUE), at least
    ``db + 2 - MW`` so that `npuc_vdecay`'s product is wider than the shift."""
    vec = [isinstance(m, np.ndarray) for m in (nc.mu, nc.mv)]
    out = {"MU": vconst(0 if vec[0] else nc.mu, cw), "MV": vconst(0 if vec[1] else nc.mv, cw)}
    if any(vec):
        w = max(2, *(_mult_range(m).bits for m, v in zip((nc.mu, nc.mv), vec) if v))
        xu = min(cw, max(2, db + 2 - w, u_r.hull(Range(0, 0)).bits))
        xv = min(cw, max(2, db + 2 - w, v_r.hull(Range.of(v_init, nc.rv)).bits))
        out.update({"MW": str(w), "VEC_MU": str(int(vec[0])), "VEC_MV": str(int(vec[1])), "XU": str(xu),
                    "XV": str(xv)})
    return out


def _subtract_range(op: ops.LIF, h: Range, vth: int, vth_lo: int, amt: Range) -> Range:
    """Range of ``h - amount(s)`` after a same-step subtractive reset, piecewise over the
    deterministic firing regions (the plain interval ``h - amt`` would cost a bit)."""
    ge = op.compare == "ge"
    parts: list[Range] = []

    def part(lo: int, hi: int, sub: int) -> None:
        lo, hi = max(lo, h.lo), min(hi, h.hi)
        if lo <= hi:
            parts.append(Range(lo - sub, hi - sub))

    if op.spike == "binary":
        part(h.lo, vth - 1 if ge else vth, 0)
        part(vth if ge else vth + 1, h.hi, vth)
    elif op.spike == "ternary":
        hi_fire = vth if ge else vth + 1  # s = +1 from here (checked first)
        lo_fire = vth_lo if ge else vth_lo - 1  # s = -1 up to here unless s = +1
        part(hi_fire, h.hi, vth)
        part(h.lo, min(lo_fire, hi_fire - 1), vth_lo)
        part(lo_fire + 1, hi_fire - 1, 0)
    elif op.spike == "multilevel" and vth > 0:
        part(h.lo, -1, 0)
        if h.hi >= 0:  # v = h mod vth below the top level, h - (levels - 1) vth above it
            parts.append(Range(0, min(vth - 1, h.hi)))
            if op.levels is not None:
                top = (op.levels - 1) * vth
                part(top, h.hi, top)
    else:
        return h - amt
    out = parts[0]
    for r in parts[1:]:
        out = out.hull(r)
    return out


def _shift_array(x: np.ndarray, e: int) -> np.ndarray:
    return x << e if e >= 0 else x >> (-e)


def _bernoulli_table(name: str, op: ops.LIF, h_r: Range, vth: int) -> tuple[list[int], Range]:
    """Threshold table for bernoulli spikes: ``dmin[r] = min{d : pq(d) >= r}`` over ``d = h - vth``,
    with ``pq(d) = floor(sigmoid(d * scale) * (2^bits - 1) + 1/2)`` evaluated exactly as
    `npuc.sim.int_kernels.LIFInt._fire` does, so ``s = (r <= pq(d)) = (d >= dmin[r])``."""
    if op.bits > MAX_BERNOULLI_BITS:
        raise RtlSupportError(f"neuron '{name}': bernoulli spikes with a {op.bits}-bit LFSR need a 2^{op.bits}-entry "
                              f"threshold table; use bits <= {MAX_BERNOULLI_BITS}")
    dlo, dhi = h_r.lo - vth, h_r.hi - vth
    m = float((1 << op.bits) - 1)
    scale = float(op.q.scale)
    # pq only changes where |d * scale| < ln(2m) + 2: evaluate that window (verified below)
    reach = (math.log(2 * m) + 2) / abs(scale) if scale else float("inf")
    lo_w = max(dlo, math.floor(-reach)) if scale > 0 else dlo
    hi_w = min(dhi, math.ceil(reach)) if scale > 0 else dhi
    if hi_w - lo_w > (1 << 24):
        raise RtlSupportError(f"neuron '{name}': bernoulli spikes over a membrane range of {hi_w - lo_w} values; "
                              "bound the membrane (v_bits) more tightly")
    lo_w, hi_w = min(lo_w, hi_w), max(lo_w, hi_w)
    d = torch.arange(lo_w, hi_w + 1, dtype=torch.int64)
    p = torch.sigmoid(d.to(torch.float64) * op.q.scale)
    pq = torch.floor(p * m + 0.5).to(torch.int64).numpy()
    if np.any(np.diff(pq) < 0) or (lo_w > dlo and pq[0] != 0) or (hi_w < dhi and pq[-1] != int(m)):
        raise RtlSupportError(f"neuron '{name}': the bernoulli firing probability is not monotone in the membrane")
    r = np.arange(1 << op.bits)
    idx = np.searchsorted(pq, r, side="left")  # first d with pq(d) >= r
    table = np.where(idx < len(pq), lo_w + idx, hi_w + 1)
    table[0] = hi_w + 1  # r = 0 never occurs (the LFSR state is nonzero)
    return [int(v) for v in table], Range(int(table.min()), int(table.max()))


# -- outputs ----------------------------------------------------------------------------------


def _output_source(graph: Graph, name: str):
    ref = graph[name].inputs[0]
    while isinstance(graph[ref.node].op, ops.Reshape) and ref.delay == 0:
        ref = graph[ref.node].inputs[0]
    return ref


def _current_outputs(graph: Graph) -> set[str]:
    """Neurons whose current ``i`` is read by an Output (their u must be stored)."""
    out = set()
    for node in graph.outputs():
        ref = _output_source(graph, node.name)
        src = graph[ref.node]
        if isinstance(src.op, ops.LIF) and src.port(ref) == "i":
            out.add(ref.node)
    return out


def _readouts(graph: Graph, layers: list[Layer | Unit]) -> tuple[list[Readout], list[dict]]:
    by_node = {lay.node: lay for lay in layers}
    readouts: list[Readout] = []
    index: dict[tuple[int, str], int] = {}

    def add(lay: Layer | Unit, port: str, probe: bool) -> int:
        key = (lay.index, port)
        if key in index:
            r = readouts[index[key]]
            r.probe = r.probe and probe
            return index[key]
        lsb, width = lay.fields[port]
        index[key] = len(readouts)
        readouts.append(Readout(lay.index, lay.node, port, lsb, width, lay.n, probe))
        return index[key]

    outputs = []
    for out in graph.outputs():
        op: ops.Output = out.op
        ref = _output_source(graph, out.name)
        src = graph[ref.node]
        if ref.delay != 0 or ref.node not in by_node:
            raise RtlSupportError(f"output '{out.name}' reads '{ref.node}' ({type(src.op).__name__}); the RTL streams "
                                  "out neuron spikes, membranes (v) and currents (i), and attention outputs only")
        port = src.port(ref)
        r = add(by_node[ref.node], port, probe=False)
        readouts[r].outputs.append(out.name)
        outputs.append({"name": out.name, "index": op.index, "decoding": op.decoding, "layout": op.layout,
                        "readout": r, "shape": list(graph[out.name].shape)})
    for lay in layers:
        for port in lay.fields:
            add(lay, port, probe=True)
    return readouts, outputs
