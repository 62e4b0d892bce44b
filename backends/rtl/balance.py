"""``lanes=auto``: synapse lanes per layer, sized so that no pipeline stage is slower than it needs to be.

A pipelined design (`npuc.backends.rtl.pipeline`) steps at the pace of its slowest stage. The
input stage takes one cycle per input word, and a layer's neuron pass one cycle per neuron,
whatever the lanes; more lanes only shorten the synapse phase. So the step time cannot go below

    floor = max(input words, neurons of any layer)

(with ``input=events`` the input stage takes the expected input events plus its count word)
and lanes beyond what brings a stage to that floor only add hardware. For every layer the
expected synapse cycles per step at L lanes are

    sum over its paths p of  E_p x taps_p x ceil(channels_p / L)

with ``E_p`` the events per step of the path's source from the calibration firing rates the
quantize pass stored (``node.meta["rate"]``), and ``taps_p`` the mean kernel taps per event. A
stage's cost is the sum over its layers (they run one after another) of synapse cycles, neurons
and fill cycles; each stage's layers get the smallest lanes that bring it to the floor, the layer
with the largest synapse cost first. Attention units keep one lane (their cost does not follow
this model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import Design, Layer
from .model import Path as SynPath
from .util import RtlSupportError

FILL = 8  # cycles per layer beyond synapses and neurons (phase starts, pipeline fill; see report.PHASE_DEPTH)


def _rate(graph: Any, pop: str) -> float:
    rate = graph[pop].meta.get("rate")
    if rate is None:
        raise RtlSupportError(f"lanes=auto needs the firing rate of '{pop}' (node.meta['rate'], set by the quantize "
                              "pass from the calibration data); compile with calibration inputs or give lanes=N")
    return float(np.sum(np.asarray(rate, dtype=np.float64)))


def _paths(lay: Layer) -> list[SynPath]:
    return [p for p in lay.paths if isinstance(p, SynPath) and p.maxpool is None]


SPIKE_QUEUE = 4  # cycles from a neuron group's first spike to its event (measured in Verilator)


def neuron_pass(n: int, nl: int, spikes: Any) -> Any:
    """Cycles of a neuron pass beyond its fill: one neuron per cycle, or with ``nl`` neuron lanes
    ``ceil(n / nl)`` groups while the step's ``spikes`` (measured per step, or expected) leave one
    per cycle through the spike queue, whichever is longer."""
    if nl == 1:
        return n
    groups = -(-n // nl)
    return np.where(np.asarray(spikes) > 0, np.maximum(groups, np.asarray(spikes) + SPIKE_QUEUE), groups)


def neuron_cost(graph: Any, lay: Layer, lanes: int, nl: int = 1) -> float:
    """Expected cycles of a layer's neuron pass with ``nl`` neuron lanes (`Layer.neuron_lanes`, a
    divisor of its ``lanes``)."""
    out = _rate(graph, lay.node) if lay.ev is not None and nl > 1 else 0.0
    return float(neuron_pass(lay.n, nl, out))


ARRAY_OVERLAP = {"early": 2, "neuron": 16, "early_only": 1, "neuron_only": 9}
"""Fixed cycles of a pipelined array layer's step (`array_cost`, from the walk in
`report.ARRAY_WALK`). With late paths (``early``, ``neuron``): a step walks the next step's early
events, then its late ones, with an idle cycle at each switch (2); and from the previous step's
done the late paths wait for the start and their kick (2), then their events, the snap (7), the
neuron pass and its drain (7) (16 beside the pass's own cycles). Without late paths
(``early_only``, ``neuron_only``): the early walk of the next step follows this one's with one idle
cycle, and the neuron pass with its snap, drain and the next start (9). Fitted on the SHD-size
array design (46.9 -> 42.2 cycles per step measured, 2026-12-07); the all-early figures follow
from the walk's structure."""


def array_cost(graph: Any, lay: Layer, nl: int, early: list[bool]) -> float:
    """Expected cycles per step of an array layer in a pipelined top whose ``early`` paths (one flag
    per path, `pipeline.early_path`) walk the next step's events while the neuron pass runs: the
    longer of the two, then the other paths' events. One cycle per event (a whole weight row)."""
    ev = [_rate(graph, p.source.pop) for p in lay.paths]
    hidden = sum(e for e, x in zip(ev, early) if x)
    late = sum(e for e, x in zip(ev, early) if not x)
    nc = neuron_cost(graph, lay, lay.n, nl)
    if all(early):
        return max(hidden + ARRAY_OVERLAP["early_only"], nc + ARRAY_OVERLAP["neuron_only"])
    return max(hidden + ARRAY_OVERLAP["early"], nc + ARRAY_OVERLAP["neuron"]) + late


def layer_cost(graph: Any, lay: Layer, lanes: int, nl: int = 1) -> float:
    """Expected cycles per step of a layer at ``lanes`` and ``nl`` neuron lanes (the design was
    lowered with one lane)."""
    return synapse_cost(graph, lay, lanes) + neuron_cost(graph, lay, lanes, nl) + FILL


def synapse_cost(graph: Any, lay: Layer, lanes: int) -> float:
    """Expected cycles per step of a layer's synapse phases at ``lanes``."""
    syn = 0.0
    for p in _paths(lay):
        taps = p.fanout / p.kc  # one lane: kc = channels
        syn += _rate(graph, p.source.pop) * taps * -(-p.cg // lanes)
    fixed = sum(p.fanout * _rate(graph, p.source.pop) for p in lay.paths if isinstance(p, SynPath) and p.maxpool)
    return syn + fixed


def top_lanes(lay: Layer) -> int:
    return max(p.cg for p in _paths(lay))


def step(graph: Any, d: Design, lay: Layer, lanes: int, nl: int) -> tuple[int, int] | None:
    """The next move of a layer at ``lanes`` and ``nl`` neuron lanes: the fewest lanes that save one
    chunk per event (neuron lanes, if any, following them), or neuron lanes in all its lanes (target
    option ``neuron_lanes``), whichever saves more expected cycles per estimated LUT4; None when
    neither saves any."""
    from .budget import layer_lut  # budget builds on this module

    moves = []
    if lanes < top_lanes(lay):
        chunks = -(-top_lanes(lay) // lanes)
        more = -(-top_lanes(lay) // (chunks - 1))
        moves.append((more, more if nl > 1 else 1))
    if d.neuron_lanes and nl < lanes and lay.neuron_lanes(lanes) > 1:
        moves.append((lanes, lanes))
    now = (layer_cost(graph, lay, lanes, nl), layer_lut(lay, lanes, nl))

    def gain(m: tuple[int, int]) -> float:
        return (now[0] - layer_cost(graph, lay, *m)) / max(1.0, layer_lut(lay, *m) - now[1])

    moves = [m for m in moves if gain(m) > 0]
    return max(moves, key=gain) if moves else None


def balance(graph: Any, d: Design) -> tuple[dict[str, int], dict[str, int]]:
    """Lanes per layer (node name) for a design lowered with one lane, and the layers that get
    neuron lanes."""
    # sequential top: no stage overlaps, each layer is brought to the floor on its own
    groups = d.pipeline.groups if d.pipeline is not None else [[k] for k in range(len(d.layers))]
    layers = {lay.index: lay for lay in d.layers if isinstance(lay, Layer) and _paths(lay)}
    # the input stage: one cycle per word (input=events: per expected event, plus the count word);
    # the output stage: one cycle per readout word
    words = sum(_rate(graph, u.node) for u in d.inputs) + 2 if d.input_events else d.words_in
    words = max(words, d.readout_words(False))
    lanes = {k: 1 for k in layers}
    on = {k: 1 for k in layers}  # neuron lanes
    for lay in layers.values():  # a missing rate is named source first, in topological order
        synapse_cost(graph, lay, 1)
    # a layer's neuron pass at the most lanes (one neuron per cycle without neuron lanes)
    floor = max([words] + [(neuron_cost(graph, lay, top_lanes(lay), lay.neuron_lanes(top_lanes(lay))
                                        if d.neuron_lanes else 1) if lay.index in layers
                            else lay.n) + FILL for lay in d.layers])
    for members in groups:
        ks = [k for k in members if k in layers]
        others = sum(lay.n + FILL for lay in d.layers if lay.index in members and lay.index not in layers)
        while others + sum(layer_cost(graph, layers[k], lanes[k], on[k]) for k in ks) > floor:
            moves = {k: step(graph, d, layers[k], lanes[k], on[k]) for k in ks}
            grow = [k for k in ks if moves[k] is not None]
            if not grow:
                break
            k = max(grow, key=lambda j: layer_cost(graph, layers[j], lanes[j], on[j]))
            lanes[k], on[k] = moves[k]
    return {layers[k].node: v for k, v in lanes.items()}, {layers[k].node: v for k, v in on.items()}
