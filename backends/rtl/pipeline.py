"""Layer pipelining across time steps: which stages run concurrently, and on which conditions.

The pipelined top (``hdl/top_pipe.v.j2``) is a chain of *stages*: the input stage (the host's
words of a step into the input event lists), one stage per *group* of consecutive layers, and the
output stage (the readout words of a step). Stage k works on step t+1 while stage k+1 works on
step t; inside a group the layers run one after another as in the sequential design. Every stage
counts the steps it finished (``n_k``); a stage starts its next step s = n_k when

* the previous stage of the chain finished s (``n_{k-1} != n_k``);
* every other stage reading an event list it writes finished s-2 (``n_k - n_C <= 1``): a list has
  two banks by step parity, and step s overwrites the bank of step s-2;
* a group holding a layer the output stage reads (every layer with ``PROBE=1``) waits for the
  output stage to finish s-1 (``n_out == n_k``): the readout reads the layer's state RAM;
* no stage runs more than ``D - 2`` steps ahead of the output stage, so the status rings of depth
  ``D`` (cycles and events of each step, read by the host after the step's last output word)
  still hold that step.

Groups are the smallest runs of consecutive layers that keep every order exact: a delayed
(recurrent) edge from layer j to layer k <= j puts k..j in one group (the consumer reads the
previous step of a layer that must already have finished it), and all readers of one event list
share a group (one read port per list). An input read with a delay leaves nothing to overlap
with; the design falls back to the sequential top (``pipeline=0``) and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bounds import unsigned_bits
from .model import AttnPath, Design, Layer, Unit


@dataclass
class Pipeline:
    """The stage schedule of a pipelined design (``Design.pipeline``)."""

    groups: list[list[int]]  # layer indices per group, in chain order (stage g + 1)
    depth: int  # status ring depth D (power of two)
    nw: int  # step counter width
    producer: dict[str, int]  # evlist ident -> stage writing it (0: input stage)
    readers: dict[str, set[int]] = field(default_factory=dict)  # evlist ident -> stages reading it
    delayed: dict[str, set[int]] = field(default_factory=dict)  # evlist ident -> stages reading its previous step
    readout_groups: set[int] = field(default_factory=set)  # stages holding a non-probe readout layer

    @property
    def stages(self) -> int:
        """Input stage + groups (the output stage is stage ``stages``)."""
        return 1 + len(self.groups)

    def stage_of(self, layer: int) -> int:
        return next(g + 1 for g, members in enumerate(self.groups) if layer in members)


def port_delays(lay: Layer | Unit) -> dict[str, int]:
    """Event-list read port of a stage module -> the delay of the edge it reads (0 or 1)."""
    if isinstance(lay, Unit):
        return dict(zip("qkv", lay.gather.delays))
    out: dict[str, int] = {}
    for p in lay.paths:
        if isinstance(p, AttnPath):
            out.update({f"p{p.index}{c}": dl for c, dl in zip("qkv", p.gather.delays)})
        else:
            out[f"p{p.index}"] = p.delay
    return out


def schedule(d: Design) -> tuple[Pipeline | None, str]:
    """The pipeline of a lowered design (``(None, reason)`` is kept for structures it cannot pipeline)."""
    n = len(d.layers)
    producer = {ev.ident: 0 for ev in (u.ev for u in d.inputs)}
    owner = {lay.ev.ident: lay.index for lay in d.layers if lay.ev is not None}
    spans: list[tuple[int, int]] = [(k, k) for k in range(n)]
    for ev_ident, users in d.consumers.items():
        for k, port in users:
            if not port_delays(d.layers[k])[port]:
                continue
            if ev_ident not in owner:
                continue  # an input: the input stage waits for this reader (see `Pipeline.delayed`)
            j = owner[ev_ident]
            spans.append((min(j, k), max(j, k)))
    groups = _merge(spans, n)
    pipe = Pipeline(groups=groups, depth=1, nw=1, producer=producer)
    for ev_ident, k in owner.items():
        producer[ev_ident] = pipe.stage_of(k)
    for ev_ident, users in d.consumers.items():
        pipe.readers[ev_ident] = {pipe.stage_of(k) for k, _ in users}
        pipe.delayed[ev_ident] = {pipe.stage_of(k) for k, port in users if port_delays(d.layers[k])[port]}
    pipe.readout_groups = {pipe.stage_of(r.layer) for r in d.readouts if not r.probe}
    # D - 2 >= stages + 1: a stage may run a step further ahead than the stages behind it hold, so
    # a slow output stream (an SHD net's 40 words per step behind two array layers) does not hold
    # the input stage back (the rings are LUT RAM: 4 and 8 deep cost the same)
    depth = 2
    while depth < pipe.stages + 3:
        depth *= 2
    pipe.depth = depth
    pipe.nw = unsigned_bits(depth) + 1
    return pipe, ""


def _merge(spans: list[tuple[int, int]], n: int) -> list[list[int]]:
    """Contiguous groups of 0..n-1 such that every span lies inside one group."""
    reach = list(range(n))
    for lo, hi in spans:
        reach[lo] = max(reach[lo], hi)
    groups: list[list[int]] = []
    k = 0
    while k < n:
        end = reach[k]
        j = k
        while j <= end:
            end = max(end, reach[j])
            j += 1
        groups.append(list(range(k, end + 1)))
        k = end + 1
    return groups


def early_path(d: Design, pipe: Pipeline, layer: int, p: Any) -> bool:
    """Whether path ``p`` of array layer ``layer`` may walk its next step's list during the layer's
    neuron pass, behind the producer's writes (`Path.early`): undelayed, written by an earlier stage
    (double-buffered: that stage cannot start the step after next before this one finished the
    next), and the only port reading its stage's copy of the list (one read port per copy)."""
    if isinstance(p, AttnPath) or p.delay:
        return False
    stage = pipe.stage_of(layer)
    readers = [k for k, _ in d.consumers[p.source.ident] if pipe.stage_of(k) == stage]
    return pipe.producer[p.source.ident] < stage and len(readers) == 1


def copy_name(pipe: Pipeline, ev_ident: str, stage: int) -> str:
    """The instance of a list's copy that ``stage`` reads (the list itself when one stage reads it)."""
    readers = sorted(pipe.readers.get(ev_ident, ()))
    return ev_ident if len(readers) <= 1 or stage == readers[0] else f"{ev_ident}_c{stage}"


def copy_banks(pipe: Pipeline, ev_ident: str, banks: int) -> list[int]:
    """Banks of each copy of a list, in reader-stage order: two where another stage reads it
    (the producer moves on to the next step), else the list's own (two for a delayed reader)."""
    readers = sorted(pipe.readers.get(ev_ident, ())) or [pipe.producer[ev_ident]]
    return [2 if r != pipe.producer[ev_ident] else banks for r in readers]
