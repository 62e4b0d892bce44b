"""Target options ``lut_budget=``, ``bram_budget=``, ``latency_us=``: lanes per layer sized to a
resource budget or a latency target.

Starting from one lane everywhere, each step adds lanes to the slowest pipeline stage (its layer
with the largest synapse cost, to the fewest lanes that save one chunk per event: the same move as
`npuc.backends.rtl.balance`), until no stage can get faster (the step floor: input words or a
layer's neurons). Every step of that walk is a candidate design with an expected step time (the
calibration firing rates, `balance.layer_cost`) and estimated resources (`estimate`):

* ``latency_us`` alone: the first (smallest) candidate whose latency per sample meets it;
* ``lut_budget`` / ``bram_budget`` alone: the last (fastest) candidate inside the budget;
* both: the smallest candidate meeting the latency, which must fit the budget.

Latency per sample = T x cycles per step / ``clock_mhz`` (a pipelined design adds the fill of its
other stages); give the Fmax that ``npuc report --synth`` measured as ``clock_mhz``, else the
target file's nominal clock is used. Resources are estimates from the design's memories and lanes
(coefficients measured with Yosys on ecp5, see `LUT_MODEL`); ``npuc report --synth`` measures them.
An impossible request is a one-line error naming the option and the smallest value that works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .balance import FILL, _paths, _rate, array_cost, layer_cost, step, top_lanes
from .model import Design, Layer
from .model import Path as SynPath
from .pipeline import early_path
from .util import RtlSupportError

BUDGET_OPTIONS = ("lut_budget", "bram_budget", "latency_us")

BRAM_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
"""Depth x width configurations of an 18 kbit block RAM (ecp5 DP16KD, Xilinx RAMB18E1)."""

BRAM_MIN_BITS = 4096
"""Memories smaller than this become distributed RAM / logic in Yosys' ecp5 mapping (estimate).
Block RAMs are counted with one shape per memory: Yosys measured 50 (1 lane) and 53 (43 lanes) on the
784-128-10 MLP where this gives 52 and 53."""

LUTRAM_DEPTH = 16
"""Memories this shallow become distributed RAM whatever their width (the 16-deep, 288-bit state
RAM of the SHD-size array layer: Yosys ``synth_ecp5`` 72 TRELLIS_DPR16X4, no block RAM)."""

LUT_MODEL = {"base": 400, "layer": 350, "lane_aw": 8.0, "lane_mul": 0.0, "weight_block": 11, "neuron_lane_w": 11.5,
             "slice_mux": 0.5}
"""LUT4 estimate for ecp5 in nextpnr's unit (TRELLIS_COMB cells placed, what ``npuc report --synth
--family ecp5`` prints): a fixed part per design and per layer, per lane ``lane_aw`` x accumulator
width (add, bypass and select, the lane's accumulator RAM, the neuron side's read mux) plus
``lane_mul`` x weight bits x payload bits for the multiply of graded payloads, and ``weight_block``
per block RAM of a weight ROM (its output mux). Fitted to the 784-128-10 MLP (npuc.nn): placed and
routed 1,864 at 1 lane and 8,130 at 43 lanes (estimates 1,922 and 7,981), split per layer with
Yosys ``synth_ecp5``; two designs, so expect larger errors on other shapes. ``lane_mul`` is 0
because Yosys maps each lane's payload multiply to a MULT18X18D, not to LUT4s: placed, the MLP
with 5-bit weights and 2-bit input events has 33 MULT18 at 26 lanes (26 + 7 in the neurons) and 17
at 10, and the former guess of 1.0 overestimated its LUT4 by 18 and 9 % (now 12 and 6 %)."""


ARRAY_MODEL = {"acc_bit": 2.05, "term_bit": 1.0, "mul_bit": 2.0, "neuron_lane_w": 7.8}
"""LUT4 per neuron of an array layer (`npuc_array`): ``acc_bit`` per shared accumulator bit (its
adder and the neuron side's group select), per bit of the registered product ``term_bit`` for
one shifted term (+-2^s payloads) or ``mul_bit`` for shift-adds (other graded payloads), none
for binary ones; ``neuron_lane_w`` per datapath bit of each neuron lane after the first (its
`npuc_lif`; placed, 8 lanes fewer saved 233 LUT4 each at W = 30, less than a lane layer's, which
also has slice selects); the weight ROM has no output mux (one row per word). Fitted to the
SHD-size net placed on the LFE5U-85F (`array=1`, lif1 16 / 8 neuron lanes, lif2 2: 18,910 /
17,048 LUT4, estimated 18,853 / 16,981; 137 DP16KD, estimated 136 / 144), see docs/rtl-backend.md,
*Neuron array layers*."""


def blocks(width: int, depth: int) -> int:
    """18 kbit block RAMs for a ``width x depth`` memory (0 below `BRAM_MIN_BITS`, or at most
    `LUTRAM_DEPTH` deep: Yosys maps those to TRELLIS_DPR16X4 distributed RAM)."""
    if width * depth < BRAM_MIN_BITS or depth <= LUTRAM_DEPTH:
        return 0
    return min(-(-width // w) * -(-depth // d) for d, w in BRAM_SHAPES)


def _lanes_of(p: SynPath, lanes: int) -> int:
    return 1 if p.maxpool is not None else lanes  # the max unit walks one lane


def _nl(lay: Layer, on: dict[int, int]) -> int:
    return on.get(lay.index, 1)


def _array_shape(lay: Layer) -> tuple[int, int, int]:
    """(weight field bits, shared accumulator bits, product bits) of a layer lowered at one lane
    as an array layer (the widths `lower._array` gives it)."""
    paths = _paths(lay)
    e0 = min(p.exp for p in paths)
    ws = max(p.ww + p.exp - e0 for p in paths)
    aw = max(p.aw + p.exp - e0 for p in paths) + (len(paths) > 1)
    return ws, aw, (0 if all(p.binary for p in paths) else ws + max(p.pw for p in paths))


def array_lut(lay: Layer, nl: int) -> float:
    """Estimated LUT4 of a layer as a neuron array with ``nl`` neuron lanes, beyond its fixed part."""
    ws, aw, dw = _array_shape(lay)
    m = ARRAY_MODEL
    graded = [p for p in _paths(lay) if not p.binary]
    term = m["mul_bit"] if any(p.pw > 2 for p in graded) else m["term_bit"]
    return lay.n * (m["acc_bit"] * aw + term * dw) + m["neuron_lane_w"] * lay.cw * (nl - 1)


def _memories(d: Design, lanes: dict[int, int], on: dict[int, int] | None = None,
              arr: dict[int, int] | None = None) -> list[tuple[int, int]]:
    """(width, depth) of every memory of the design at ``lanes`` per layer (index) and ``on[index]``
    neuron lanes (``arr``: the array layers); lowered at one lane."""
    out: list[tuple[int, int]] = []
    for lay in d.layers:
        if not isinstance(lay, Layer):
            out += [(m.width, m.depth) for m in (lay.gather.rom, *lay.memories)]
            continue
        nl = _nl(lay, on or {})
        if lay.index in (arr or {}):
            nl = arr[lay.index]
        groups = -(-lay.n // nl)
        out.append((lay.state_width * nl, groups))
        for m in (lay.bias, lay.vmin, lay.dmin, lay.decay):
            if m is not None:
                out.append((m.width * nl, -(-m.depth // nl)))
        if nl > 1 and lay.ev is not None:  # the spike queue
            out.append((lay.naw + nl * (lay.sw + 1), groups))
        if lay.index in (arr or {}):  # one ROM of whole rows; accumulators in registers
            out.append((lay.n * _array_shape(lay)[0], sum(p.weights.depth // p.kc for p in _paths(lay))))
            out += [(p.bias.width * nl, -(-p.bias.depth // nl)) for p in lay.paths if p.bias is not None]
            continue
        for p in lay.paths:
            if not isinstance(p, SynPath):
                out += [(m.width, m.depth) for m in (p.gather.rom, p.iter_rom)]
                continue
            n_l = _lanes_of(p, lanes.get(lay.index, 1))
            kc = -(-p.cg // n_l)
            out.append((p.ww * n_l, p.weights.depth // p.kc * kc))  # one lane: depth = rows x kc
            out += [(p.aw, p.adepth // p.kc * kc)] * n_l
            out += [(m.width, m.depth) for m in (p.decode,) if m is not None]
            if p.bias is not None:
                out.append((p.bias.width * nl, -(-p.bias.depth // nl)))
    for ev in d.evlists:
        out.append((ev.dw, ev.n * (ev.banks + sum(ev.copy_banks))))
    return out


def layer_lut(lay: Layer, lanes: int, nl: int = 1) -> float:
    """Estimated LUT4 of a layer's ``lanes`` and ``nl`` neuron lanes, beyond its fixed part (a
    neuron lane: its `npuc_lif`; with fewer neuron lanes than lanes, a slice select per lane)."""
    m = LUT_MODEL
    lut = m["neuron_lane_w"] * lay.cw * (nl - 1)
    if 1 < nl < lanes:
        lut += m["slice_mux"] * (lanes // nl - 1) * nl * sum(p.aw for p in lay.paths if isinstance(p, SynPath))
    for p in lay.paths:
        if not isinstance(p, SynPath):
            continue
        n_l = _lanes_of(p, lanes)
        lut += n_l * (m["lane_aw"] * p.aw + (0 if p.binary else m["lane_mul"] * p.ww * p.pw))
        lut += m["weight_block"] * blocks(p.ww * n_l, p.weights.depth // p.kc * -(-p.cg // n_l))
    return lut


def estimate(d: Design, lanes: dict[int, int], on: dict[int, int] | None = None,
             arr: dict[int, int] | None = None) -> dict[str, int]:
    """Estimated ``{"lut", "bram"}`` of the design lowered at one lane when each layer (index) gets
    ``lanes[index]`` lanes and ``on[index]`` neuron lanes, or is an array layer with ``arr[index]``."""
    m = LUT_MODEL
    on, arr = on or {}, arr or {}
    lut = m["base"] + m["layer"] * len(d.layers)
    lut += sum(array_lut(lay, arr[lay.index]) if lay.index in arr else
               layer_lut(lay, lanes.get(lay.index, 1), _nl(lay, on)) for lay in d.layers if isinstance(lay, Layer))
    return {"lut": int(round(lut)), "bram": sum(blocks(w, dp) for w, dp in _memories(d, lanes, on, arr))}


@dataclass
class Candidate:
    lanes: dict[int, int]  # layer index -> lanes
    neuron: dict[int, int]  # layer index -> neuron lanes (1: one neuron per cycle)
    cycles_per_step: float
    latency_cycles: float
    lut: int
    bram: int
    array: dict[int, int] | None = None  # layer index -> neuron lanes of the array layers

    def latency_us(self, clock_mhz: float) -> float:
        return round(self.latency_cycles, 3) / clock_mhz  # the rates are float32


def _stage_costs(graph: Any, d: Design, lanes: dict[int, int], on: dict[int, int],
                 arr: dict[int, int] | None = None) -> list[tuple[float, list[int]]]:
    """(expected cycles per step, layer indices) of every stage: input, layer groups, output
    (``arr``: the array layers, whose early paths overlap the neuron pass in a pipelined top)."""
    groups = d.pipeline.groups if d.pipeline is not None else [[k] for k in range(len(d.layers))]
    words = sum(_rate(graph, u.node) for u in d.inputs) + 2 if d.input_events else d.words_in
    out = [(float(words), [])]
    for members in groups:
        cost = 0.0
        for k in members:
            lay = d.layers[k]
            if k in (arr or {}) and d.pipeline is not None:
                early = [early_path(d, d.pipeline, k, p) for p in lay.paths]
                cost += array_cost(graph, lay, arr[k], early)
                continue
            cost += layer_cost(graph, lay, lanes[k], on.get(k, 1)) if k in lanes else lay.n + FILL
        out.append((cost, list(members)))
    out.append((float(d.readout_words(False)), []))
    return out


def _candidate(graph: Any, d: Design, lanes: dict[int, int], on: dict[int, int] | None = None,
               arr: dict[int, int] | None = None) -> Candidate:
    on, arr = dict(on or {}), dict(arr or {})
    # an array layer costs what its lane layer costs at one lane per neuron and its neuron lanes (in a
    # pipelined top its early paths' events overlap the neuron pass: balance.array_cost)
    lanes_c = {k: (d.layers[k].n if k in arr else v) for k, v in lanes.items()}
    costs = [c for c, _ in _stage_costs(graph, d, lanes_c, {**on, **arr}, arr)]
    steps = graph.num_steps or 1  # latency_us needs the steps (checked in `size`)
    if d.pipeline is not None:
        cps = max(costs)
        latency = steps * cps + sum(costs) - cps
    else:
        cps = sum(costs)
        latency = steps * cps
    est = estimate(d, lanes, on, arr)
    return Candidate(dict(lanes), on, cps, latency, est["lut"], est["bram"], arr)


def walk(graph: Any, d: Design) -> list[Candidate]:
    """Candidate designs from one lane everywhere to the fastest, each step speeding up the slowest
    stage (`balance.step`: more lanes, or neuron lanes)."""
    layers = {lay.index: lay for lay in d.layers if isinstance(lay, Layer) and _paths(lay)}
    lanes = {k: 1 for k in layers}
    on = {k: 1 for k in layers}
    out = [_candidate(graph, d, lanes, on)]
    while True:
        cost, members = max(_stage_costs(graph, d, lanes, on), key=lambda c: c[0])
        moves = {k: step(graph, d, layers[k], lanes[k], on[k]) for k in members if k in layers}
        grow = [k for k, m in moves.items() if m is not None]
        if not grow:
            return out  # the slowest stage is the input / output stream, or fully parallel
        k = max(grow, key=lambda j: layer_cost(graph, layers[j], lanes[j], on[j]))
        lanes[k], on[k] = moves[k]
        out.append(_candidate(graph, d, lanes, on))


def with_neuron_lanes(graph: Any, d: Design, cands: list[Candidate]) -> list[Candidate]:
    """The walk's candidates and, for each, variants with ``nl`` = 2, 4, 8, ... neuron lanes in every
    layer that can have them, its lanes rounded up to a multiple of ``nl`` (at most its channels),
    when that is faster; sorted by estimated LUT4. (The walk's steps weigh cycles saved per LUT4 one
    move at a time: neuron lanes save a layer's neuron pass at once, which that greedy order reaches
    only after many lane steps, and only with all its lanes.)"""
    out = list(cands)
    if not d.neuron_lanes:
        return out
    for c in cands:
        for nl in (2 ** e for e in range(1, 16)):
            lanes, on = dict(c.lanes), dict(c.neuron)
            for k, n in c.lanes.items():
                lay = d.layers[k]
                wide = nl * -(-n // nl)
                if lay.neuron_lanes(n) > 1 and on.get(k, 1) == 1 and wide <= top_lanes(lay):
                    lanes[k], on[k] = wide, nl
            if on != c.neuron:
                v = _candidate(graph, d, lanes, on)
                if v.cycles_per_step < c.cycles_per_step:
                    out.append(v)
    return sorted(out, key=lambda c: (c.lut, c.cycles_per_step))


def with_arrays(graph: Any, d: Design, cands: list[Candidate]) -> list[Candidate]:
    """The candidates and, for each, variants with every layer that can be a neuron array
    (`Layer.array_why` None) an array layer at ``array_nl`` = 2, 4, 8, ... (`lower.array_lanes`),
    when that is faster; sorted by estimated LUT4."""
    from .lower import array_lanes  # lower builds on this module

    ok = [lay for lay in d.layers if isinstance(lay, Layer) and lay.array_why is None and _paths(lay)]
    if not ok:
        return cands
    n_max = max(lay.n for lay in d.layers if isinstance(lay, Layer))
    out, seen = list(cands), set()
    for c in cands:
        for nl in (2 ** e for e in range(1, 16)):
            arr = {lay.index: array_lanes(lay.n, nl, n_max) for lay in ok}
            # the lanes of an array layer do not matter: one variant per lanes of the others
            key = (tuple(sorted(arr.items())), tuple(sorted((k, v) for k, v in c.lanes.items() if k not in arr)))
            v = _candidate(graph, d, c.lanes, c.neuron, arr)
            if key not in seen and v.cycles_per_step < c.cycles_per_step:
                seen.add(key)
                out.append(v)
            if nl >= n_max:
                break
    return sorted(out, key=lambda c: (c.lut, c.cycles_per_step))


def size(graph: Any, d: Design, options: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Lanes per layer (node name) for a design lowered with one lane, under the target's budget
    options, the layers that get neuron lanes and the array layers (their neuron lanes)."""
    lut, bram, latency = (options.get(k) for k in BUDGET_OPTIONS)
    clock = float(options.get("clock_mhz") or 100.0)
    if latency is not None and not graph.num_steps:
        raise RtlSupportError(f"target option latency_us={latency}: graph '{graph.name}' has no fixed number of "
                              "time steps to count a sample's latency over")
    cands = with_neuron_lanes(graph, d, walk(graph, d))
    if options.get("array") == "auto":  # target option array=auto: array layers are candidates too
        cands = with_arrays(graph, d, cands)
    limits = {"lut_budget": lut, "bram_budget": bram}

    def fits(c: Candidate, skip: str = "") -> bool:
        return all(v is None or _need(c, k) <= v for k, v in limits.items() if k != skip)

    def short(cs: list[Candidate]) -> tuple[str, int, int]:
        """A budget that no candidate of ``cs`` meets: (option, its value, the least that works with the
        other budget kept, or on its own when the other one cannot be met either)."""
        given = [(k, v) for k, v in limits.items() if v is not None]
        for name, have in given:
            pool = [c for c in cs if fits(c, skip=name)]
            if pool and all(_need(c, name) > have for c in pool):
                return name, have, min(_need(c, name) for c in pool)
        name, have = given[0]
        return name, have, min(_need(c, name) for c in cs)

    inside = [c for c in cands if fits(c)]
    if latency is None:
        if not inside:
            name, have, need = short(cands)
            raise RtlSupportError(f"target option {name}={have}: the smallest design needs about {need} "
                                  f"{_UNIT[name]}; use {name} >= {need}")
        return _named(d, min(inside, key=lambda c: c.cycles_per_step))
    meets = [c for c in cands if c.latency_us(clock) <= latency]
    if not meets:
        best = math.ceil(min(c.latency_us(clock) for c in cands) * 10) / 10
        raise RtlSupportError(f"target option latency_us={latency:g}: the fastest design needs about {best:g} us "
                              f"per sample at clock_mhz={clock:g}; use latency_us >= {best:g} (or a higher clock_mhz)")
    ok = [c for c in meets if c in inside]
    if not ok:
        name, have, need = short(meets)
        raise RtlSupportError(f"target option {name}={have}: latency_us={latency:g} needs about {need} "
                              f"{_UNIT[name]}; use {name} >= {need} (or a larger latency_us)")
    return _named(d, ok[0])


_UNIT = {"lut_budget": "LUT4", "bram_budget": "block RAMs (18 kbit)"}


def _need(c: Candidate, name: str) -> int:
    return c.lut if name == "lut_budget" else c.bram


def _named(d: Design, c: Candidate) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    return ({d.layers[k].node: v for k, v in c.lanes.items()}, {d.layers[k].node: v for k, v in c.neuron.items()},
            {d.layers[k].node: v for k, v in (c.array or {}).items()})
