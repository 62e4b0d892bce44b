"""What the top-level templates (``top.v.j2``, ``top_pipe.v.j2``, ``tb.py.j2``, ``harness.cpp.j2``,
``axis.v.j2``, ``README.j2``) read of a `Design`: its wiring, as data.

A stage's own module prints the model object itself (`Layer`, `Unit`); the top needs, besides
the model, where every stage's event-list read ports point (a pipelined top gives each reading
stage its own copy of a list), which ports share a list's read mux, the bit layout of the event
and pool counts on the status bus, and the pipeline's stage conditions. Those are computed here;
every Verilog expression made from them is printed by the macros in ``hdl/top_macros.j2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bounds import unsigned_bits
from .model import AttnPath, Design, EventList, Layer, Unit
from .pipeline import copy_name


@dataclass
class EvPort:
    """An event-list read port of a stage module.

    Attributes:
        name: port prefix in the stage module (``p<path>`` or ``p<path>q/k/v``; a unit's ``q/k/v``).
        src: the event list (or, in a pipelined top, the reading stage's copy) it is wired to.
        eaw: address / count width of that list.
        dw: event word width.
        delay: 1 when the port reads the previous step's events (a recurrent edge).
    """

    name: str
    src: str
    eaw: int
    dw: int
    delay: int = 0


@dataclass
class StageView:
    """A stage instance in the top.

    Attributes:
        model: the `Layer` / `Unit` (index, node, n, ident, module, naw, state_width, ev_dw ... ).
        ports: its event-list read ports.
        pool_count_w: total width of its pooled paths' event counts (0 without pooling).
        pool_count_lsb: where those counts start on the top's pool-count bus.
    """

    model: Layer | Unit
    ports: list[EvPort]
    pool_count_w: int
    pool_count_lsb: int = 0

    def __getattr__(self, name: str) -> Any:  # the model's own fields (ident, module, n, ...)
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def ev(self) -> str | None:
        return self.model.ev.ident if self.model.ev else None

    @property
    def stw(self) -> int:
        return self.model.state_width

    @property
    def pools(self) -> bool:
        return self.pool_count_w > 0

    @property
    def ro_copy(self) -> bool:
        return bool(getattr(self.model, "ro_copy", False))

    @property
    def early(self) -> bool:
        """An array layer walking some path's next step during its neuron pass (`Path.early`)."""
        return getattr(self.model, "array", None) is not None and any(p.early for p in self.model.paths)


@dataclass
class EvCopy:
    """One copy of an event list (a pipelined top: one per reading stage).

    Attributes:
        ident: the copy's name; banks: its banks (2: double-buffered); maw: its memory address width;
        readers: the prefixes ``<stage>_<port>`` of the ports reading it (their ``_ev_re``,
        ``_ev_bank`` and ``_ev_addr`` are OR-ed into its read port: one reads at a time).
    """

    ident: str
    banks: int
    maw: int
    readers: list[str]


@dataclass
class EvListView:
    """An event list of the top: the model's `EventList` plus its read mux and status layout.

    Attributes:
        model: the `EventList` (ident, dw, n, iaw, banks, maw, pop).
        readers: prefixes ``<stage>_<port>`` of every port reading it (sequential top).
        count_lsb: where its event count starts on the status bus.
        prod: the pipeline stage that writes it (pipelined top), else None.
        copies: its per-stage copies (pipelined top), else empty.
    """

    model: EventList
    readers: list[str]
    count_lsb: int
    prod: int | None = None
    copies: list[EvCopy] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


@dataclass
class PoolCount:
    """A pooled path's event count on the status bus: stage ident, path index, lsb, width."""

    layer: str
    path: int
    lsb: int
    w: int


@dataclass
class StageCondition:
    """When pipeline stage ``k`` may start step ``n_s<k>``, as data (its `terms`; the top registers
    them from the counters' next values):

    Attributes:
        k: the stage.
        prev: ``k - 1`` (it must have finished the step) or None for the input stage.
        readers: ``(stage c, delayed)`` for every other stage reading this stage's outputs: a
            same-step reader may lag at most one step; a delayed (recurrent) reader must be at this
            step, because step s overwrites the bank of step s-2 it still needs for its step s-1.
        readout: "sync" (the readout must have caught up), "bank" (with PROBE=0 it may be one step
            ahead: its readout layers keep a copy by step parity, `Layer.ro_copy`), "probe" (only
            when probes are read) or None.
        depth: status depth (how far stage k may run ahead of the readout: ``depth - 2``).
    """

    k: int
    prev: int | None
    readers: list[tuple[int, bool]]
    readout: str | None
    depth: int

    def terms(self, nw: int) -> list[CounterTerm]:
        """The condition as tests of counter differences (the top registers their next values)."""
        me, out, always = f"s{self.k}", "out", (1 << nw) - 1
        terms = [] if self.prev is None else [CounterTerm(f"s{self.prev}", me, None)]
        terms += [CounterTerm(me, f"s{r}", 0 if delayed else 1) for r, delayed in self.readers]
        bounds = {"sync": (0, 0), "bank": (1, 0), "probe": (always, 0)}.get(self.readout or "")
        if bounds:
            terms.append(CounterTerm(me, out, *bounds))
        terms.append(CounterTerm(me, out, self.depth - 2))
        return terms


@dataclass
class CounterTerm:
    """A term of a stage's start condition on the difference ``d = n_<a> - n_<b>`` of two step
    counters (``n_s<k>`` or ``n_out``, modulo ``2 ** nw``): ``d <= bound`` (``bound_probe`` instead
    when the top's PROBE parameter is set), or ``d != 0`` when bound is None."""

    a: str
    b: str
    bound: int | None
    bound_probe: int | None = None

    def __post_init__(self) -> None:
        if self.bound_probe is None:
            self.bound_probe = self.bound


@dataclass
class PipeGroup:
    """Stages that start together: id (``s<id>``), their stage views, select width, start condition."""

    id: int
    layers: list[StageView]
    lw: int
    cond: StageCondition


@dataclass
class PipeView:
    """The stage chain of a pipelined top (see `npuc.backends.rtl.pipeline`).

    Attributes: stages (count), groups, depth (status depth), nw (step counter width), sw (status
    index width), input_cond (the input stage's start condition).
    """

    stages: int
    groups: list[PipeGroup]
    depth: int
    nw: int
    sw: int
    input_cond: StageCondition

    @property
    def conds(self) -> list[StageCondition]:
        """The start condition of every stage, by stage."""
        return [self.input_cond, *(g.cond for g in self.groups)]

    @property
    def differences(self) -> list[tuple[str, str]]:
        """The counter differences ``(a, b)`` the start conditions test, once each."""
        return list(dict.fromkeys((t.a, t.b) for c in self.conds for t in c.terms(self.nw)))


@dataclass
class TopView:
    """Everything the top-level templates print: the design's fields plus the wiring above.

    Attributes not on `Design`: layers / evlists (views), n_out_items (non-probe readouts),
    itw / rnw / liw / wcw / tw (widths of the readout item, readout index, layer index, input
    word counter and step counter), steps_param, words_out / words_probe, ev_count_w and
    pool_count_w (status bus widths), pools, pipe, events (input as events), take / pos (the
    top's input-accept strobe and word position signals).
    """

    design: Design
    layers: list[StageView]
    evlists: list[EvListView]
    pools: list[PoolCount]
    pipe: PipeView | None
    ev_count_w: int
    pool_count_w: int

    def __getattr__(self, name: str) -> Any:  # graph, top, profile, in_w, out_w, inputs, readouts, words_in
        if name == "design":
            raise AttributeError(name)
        return getattr(self.design, name)

    @property
    def n_out_items(self) -> int:
        return sum(1 for r in self.design.readouts if not r.probe)

    @property
    def itw(self) -> int:
        return unsigned_bits(len(self.design.readouts))

    @property
    def rnw(self) -> int:
        return unsigned_bits(max(r.n for r in self.design.readouts))

    @property
    def liw(self) -> int:
        return unsigned_bits(len(self.design.layers) - 1)

    @property
    def wcw(self) -> int:
        return unsigned_bits(self.design.words_in)

    @property
    def steps_param(self) -> int:
        return self.design.steps or 1

    @property
    def tw(self) -> int:
        return unsigned_bits(self.steps_param)

    @property
    def words_out(self) -> int:
        return self.design.readout_words(False)

    @property
    def words_probe(self) -> int:
        return self.design.readout_words(True)

    @property
    def events(self) -> bool:
        return self.design.input_events

    @property
    def take(self) -> str:
        return "in_take" if self.design.pipeline else "in_fire"

    @property
    def pos(self) -> str:
        return "in_pos" if self.design.pipeline else "w"


def _port(name: str, ev: EventList, delay: int = 0) -> EvPort:
    return EvPort(name=name, src=ev.ident, eaw=ev.iaw, dw=ev.dw, delay=delay)


def _stage_ports(lay: Layer | Unit) -> list[EvPort]:
    if isinstance(lay, Unit):
        return [_port(c, ev, dl) for c, ev, dl in zip("qkv", lay.gather.sources, lay.gather.delays)]
    ports = []
    for p in lay.paths:
        if isinstance(p, AttnPath):
            ports += [_port(f"p{p.index}{c}", ev, dl) for c, ev, dl in zip("qkv", p.gather.sources, p.gather.delays)]
        else:
            ports.append(_port(f"p{p.index}", p.source, p.delay))
    return ports


def _pool_widths(lay: Layer | Unit) -> list[tuple[int, int]]:
    """A layer's pooled paths as ``(path index, count width)``, in the order of its ``pool_counts``."""
    return [] if isinstance(lay, Unit) else [(p.index, p.pool.qcw) for p in lay.paths if p.pool is not None]


def _copies(d: Design, ev: EventList, layers: list[StageView]) -> list[EvCopy]:
    """A pipelined top's copies of an event list, one per reading stage; points every reading port
    of a stage at its stage's copy."""
    pipe = d.pipeline
    stages = sorted(pipe.readers.get(ev.ident, ())) or [pipe.producer[ev.ident]]
    out = []
    for stage, banks in zip(stages, (ev.banks, *ev.copy_banks)):
        name = copy_name(pipe, ev.ident, stage)
        users = [(k, port) for k, port in d.consumers[ev.ident] if pipe.stage_of(k) == stage]
        for k, port in users:
            next(pt for pt in layers[k].ports if pt.name == port).src = name
        out.append(EvCopy(ident=name, banks=banks, maw=max(ev.iaw, unsigned_bits(banks * ev.n - 1)),
                          readers=[f"{layers[k].ident}_{port}" for k, port in users]))
    return out


def _condition(d: Design, k: int) -> StageCondition:
    pipe = d.pipeline
    readers = {c for ev, prod in pipe.producer.items() if prod == k for c in pipe.readers.get(ev, ())}
    delayed = {c for ev, prod in pipe.producer.items() if prod == k for c in pipe.delayed.get(ev, ())}
    if k < pipe.stages - 1:
        readers.add(k + 1)  # the next stage reads this stage's first flags
    readout = None if not k else "sync" if k in pipe.readout_groups else "probe"
    if readout == "sync" and all(getattr(d.layers[r.layer], "ro_copy", False) for r in d.readouts
                                 if not r.probe and pipe.stage_of(r.layer) == k):
        readout = "bank"  # its readouts read copies by step parity: one step ahead of the output stage
    return StageCondition(k=k, prev=k - 1 if k else None, readers=[(c, c in delayed) for c in sorted(readers - {k})],
                          readout=readout, depth=pipe.depth)


def _pipe_view(d: Design, layers: list[StageView]) -> PipeView:
    pipe = d.pipeline
    groups = [PipeGroup(id=g, layers=[layers[k] for k in members], lw=unsigned_bits(len(members) - 1),
                        cond=_condition(d, g))
              for g, members in enumerate(pipe.groups, start=1)]
    return PipeView(stages=pipe.stages, groups=groups, depth=pipe.depth, nw=pipe.nw,
                    sw=max(1, pipe.depth.bit_length() - 1), input_cond=_condition(d, 0))


def view(d: Design) -> TopView:
    """The top-level templates' view of ``d``."""
    layers, lsb = [], 0
    for lay in d.layers:
        w = sum(qcw for _, qcw in _pool_widths(lay))
        layers.append(StageView(model=lay, ports=_stage_ports(lay), pool_count_w=w, pool_count_lsb=lsb))
        lsb += w
    pools = []
    for lv in layers:
        at = lv.pool_count_lsb
        for index, qcw in _pool_widths(lv.model):
            pools.append(PoolCount(layer=lv.ident, path=index, lsb=at, w=qcw))
            at += qcw
    evs, count_lsb = [], 0
    for ev in d.evlists:
        evs.append(EvListView(
            model=ev, readers=[f"{layers[k].ident}_{port}" for k, port in d.consumers[ev.ident]], count_lsb=count_lsb,
            prod=d.pipeline.producer[ev.ident] if d.pipeline else None,
            copies=_copies(d, ev, layers) if d.pipeline else []))
        count_lsb += ev.iaw
    return TopView(design=d, layers=layers, evlists=evs, pools=pools,
                   pipe=_pipe_view(d, layers) if d.pipeline else None, ev_count_w=count_lsb, pool_count_w=lsb)
