"""The RTL design as a small object model: what the templates print.

`npuc.backends.rtl.lower` builds a `Design` from a quantized graph and makes
every decision there (widths, memory layouts, modes, which units exist);
`npuc.backends.rtl.render` prints it through the jinja2 templates in
``npuc.hdl`` (loops and fields only) and writes the memory images.

Hardware summary (see ``docs/rtl-backend.md``): one *stage* per LIF node
(`Layer`) or attention population (`Unit`), run one after another in
topological order every time step. A layer walks each synapse path's source
event list with an event-driven engine (`npuc_syn`, optionally fed by a
pooling unit `npuc_pool`; a coincidence-attention engine `npuc_attn` for a
SpikeAttention path), accumulating into per-path, per-lane accumulator RAMs,
then updates its neurons one per cycle (`npuc_lif`) and appends its nonzero
spikes to its own event list. A unit (`npuc_sc_attn`, `npuc_linattn`) gathers
its three inputs and appends its outputs to its event list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Memory:
    """A ``$readmemh`` image of ``width``-bit words (two's complement; signed values allowed).

    ``words`` is either a 1-D object array of python ints, or a 2-D integer array of *lane
    values* ``[depth, L]`` packed ``width // L`` bits each, lane 0 lowest (a weight ROM row):
    kept unpacked so multi-million-word images are packed and printed by numpy, not per word."""

    name: str  # file name inside the artifact's mem/ folder
    width: int
    words: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.words)

    @property
    def path(self) -> str:
        return f"mem/{self.name}"

    @property
    def bits(self) -> int:
        return self.width * self.depth

    def hex(self) -> str:
        """The image as ``$readmemh`` text: one word per line, ceil(width / 4) hex digits."""
        return hex_image(self.words, self.width)


def hex_image(words: np.ndarray, width: int, chunk: int = 1 << 18) -> str:
    """``$readmemh`` text of `Memory.words` (either form), ``chunk`` rows at a time."""
    digits = max(1, -(-width // 4))
    lanes = words.reshape(len(words), -1) if words.dtype != object else None
    if lanes is None and width <= 62:
        lanes = np.array([int(w) for w in words], dtype=np.int64).reshape(-1, 1)
    if lanes is None:  # wide 1-D images of python ints (small: decode/iteration ROMs)
        mask = (1 << width) - 1
        return "".join(f"{int(w) & mask:0{digits}x}\n" for w in words)
    lw, rem = divmod(width, lanes.shape[1])
    if rem:
        raise ValueError(f"a {width}-bit word does not split into {lanes.shape[1]} lanes")
    nbytes = -(-(lw * lanes.shape[1]) // 8)
    shifts = np.arange(lw, dtype=np.int64)
    out = []
    for at in range(0, len(lanes), chunk):
        part = lanes[at:at + chunk].astype(np.int64)
        bits = ((part[..., None] >> shifts) & 1).astype(np.uint8).reshape(len(part), -1)
        packed = np.packbits(bits, axis=1, bitorder="little")
        packed = np.pad(packed, ((0, 0), (0, nbytes - packed.shape[1])))[:, ::-1]  # big-endian rows
        text = np.frombuffer(np.ascontiguousarray(packed).tobytes().hex().encode(), dtype="S1")
        text = text.reshape(len(part), 2 * nbytes)[:, 2 * nbytes - digits:]
        out.append(np.hstack([text, np.full((len(part), 1), b"\n", dtype="S1")]).tobytes().decode())
    return "".join(out)


@dataclass
class EventList:
    """Event list of a population (`npuc_evlist`): entries ``{payload, index}``."""

    ident: str  # instance name
    pop: str  # graph node
    n: int
    iw: int  # index width
    pw: int  # payload width (signed)
    iaw: int  # count / address width within a bank
    maw: int  # memory address width
    banks: int
    copy_banks: tuple[int, ...] = ()  # a pipelined top's further copies (one per reading stage), their banks
    # every reader is a neuron array layer: they drive the address of their next cycle's read, which
    # the list registers (npuc_evlist RA_NEXT), so its block RAM's address pins hang off flip-flops
    ra_next: bool = False

    @property
    def dw(self) -> int:
        return self.pw + self.iw

    @property
    def bits(self) -> int:
        return self.dw * self.n * (self.banks + sum(self.copy_banks))


@dataclass
class InputUnit:
    """One Input node: an encoder (`npuc_input`) fed from the top-level word stream."""

    node: str
    ident: str
    kind: int  # npuc_input KIND
    kind_name: str
    n: int
    offset: int  # first word of this input in a step's stream
    xw: int  # value bits used from the word
    pw: int  # event payload width (signed)
    iw: int  # event index width
    cw: int  # compute width of the rate / latency comparisons
    lw: int  # LFSR width (bernoulli)
    taps: int  # LFSR feedback taps
    seed: int  # LFSR seed
    mq: int  # MQ: the quantized unit value (2^xw - 1; 1 for current / spikes)
    ev: EventList
    host: dict[str, Any]  # what the host needs to encode words (npuc.sim.encoding)


@dataclass
class PoolUnit:
    """Pre-synaptic pooling of a path's source (`npuc_pool`; the fields are its parameters)."""

    nodes: list[str]
    is_or: bool  # max pooling of binary spikes (OR) instead of sum pooling
    pwi: int  # source payload width (signed)
    pw: int  # pooled payload width (signed)
    iw: int  # source index width
    eaw: int  # source event count / address width
    qw: int  # pooled index width
    nq: int  # pooled outputs
    qaw: int  # address width of the NQ-deep memories
    qcw: int  # pooled count width (holds NQ)
    rom: Memory  # decode ROM: source event -> {nx, ny, first window}
    rom_aw: int
    nyb: int  # widths of the window counts ny, nx in a ROM entry
    nxb: int
    owp: int  # pooled row pitch (windows per row)
    windows_per_event: float


@dataclass
class MaxUnit:
    """Max pooling of a convolution's accumulators (`npuc_acc_max`): for each of ``n`` pooled neurons,
    ``k`` ROM words ``{valid, accumulator address}`` (one per window tap)."""

    node: str  # the MaxPool2d graph node
    rom: Memory
    rom_aw: int
    n: int
    k: int


@dataclass
class Path:
    """One synapse path into a layer: engine (`npuc_syn`) + accumulators + post (`npuc_syn_post`).

    ``layer.v.j2`` prints it as is. The terse fields are the `npuc_syn` parameters of the same
    name: widths ``ww`` (weight), ``pw`` (payload), ``aw`` (accumulator), ``iw`` (event index),
    ``eaw`` (event address), ``waw`` / ``aaw`` (weight ROM / accumulator RAM address), ``bw``
    (bias), ``chw`` (channel index); ``cg`` output channels per group are spread over ``lanes``
    accumulator lanes in ``kc = ceil(cg / lanes)`` chunks, counted in ``kcb`` bits; ``adepth``
    words per lane; ``iter_p`` / ``iter_nw`` are the `npuc_acc_iter` walk (neurons per channel,
    counter width). A layer's phase for this path is ``PH_P<index>_POOL`` / ``_SYN`` / ``_MAX``.
    """

    index: int
    source: EventList
    delay: int
    pool: PoolUnit | None
    weighted: str  # graph node
    nodes: list[str]  # every graph node of the path (pre, weighted, post)
    kind: int  # npuc_syn KIND: 0 dense, 1 conv, 2 token-wise dense
    lanes: int  # parallel accumulator lanes (output channels split among them)
    ww: int  # weight width (signed)
    pw: int  # event payload width (signed) the engine reads
    binary: bool  # payloads are always 1 (no multiplier)
    aw: int  # accumulator width (signed, exact for the path)
    iw: int  # event index width
    eaw: int  # event count / address width
    weights: Memory  # lane-interleaved weight ROM (lanes * ww bits per word)
    waw: int  # weight ROM address width
    adepth: int  # accumulator words per lane
    aaw: int  # accumulator address width
    kc: int  # lane chunks per channel group: ceil(cg / lanes)
    kcb: int  # chunk counter width (holds kc)
    cg: int  # output channels per group (dense: outputs)
    conv: dict[str, int]  # conv engine parameters (GB, CIB, ..., JSTEP); empty for dense
    decode: Memory | None  # decode ROM (conv taps / token-wise fields), folding pre-synaptic reshapes
    decode_aw: int
    exp: int  # weight exponent: current = acc << exp (>> -exp)
    bias: Memory | None  # synapse bias per neuron
    bw: int  # synapse bias width
    ovf_bits: int  # conv accumulator overflow rule (npuc_ovf BITS, MODE)
    ovf_mode: int
    iter_p: int  # neurons per channel (conv OH*OW, dense 1)
    iter_nw: int  # npuc_acc_iter counter width
    chw: int  # channel index width
    fanout: float  # mean (taps x chunks) cycles per event
    fanout_synapses: float  # mean synapses per event
    bias_delayed: bool = False  # the current (bias included) is delayed: no bias on a sample's first step
    maxpool: MaxUnit | None = None  # max of the accumulated currents before the neuron reads them
    # an array layer's path whose next step's list is complete before the layer starts that step (a
    # pipelined top: written by an earlier stage, read by no other port of its copy), so its events
    # accumulate while the layer's previous neuron pass runs (`lower._early_paths`)
    early: bool = False
    early_stage: int = 0  # the pipeline stage writing its list (early paths)


@dataclass
class Gather:
    """The event gather of an attention unit's three inputs Q, K, V (`npuc_gather`)."""

    sources: list[EventList]  # Q, K, V event lists (may repeat)
    delays: list[int]  # per input: 1 reads the previous step's events
    nodes: list[list[str]]  # per input: the population and the Reshape/Permute ops after it
    pw: int  # common payload width (sources are sign-extended to it)
    iw: int  # common index width
    eaw: int  # common event address width
    fw: int  # field width in the rows
    aaw: int  # row address width of RAM A (query rows) and RAM B (key/value rows)
    baw: int
    rww: int  # row field width of a decode ROM entry
    fb: int  # element position width of a decode ROM entry
    rom: Memory
    rom_aw: int
    base1: int  # first ROM entry of K and of V
    base2: int
    caw: int  # clear counter width
    depths: tuple[int, int]  # rows of RAM A and RAM B
    widths: tuple[int, int]  # bits per row of RAM A and RAM B

    def params(self) -> dict[str, str]:
        """The npuc_gather parameters (the unit's front end, instantiated next to its core)."""
        return {"PW": str(self.pw), "IW": str(self.iw), "EAW": str(self.eaw), "FW": str(self.fw),
                "WA": str(self.widths[0]), "DA": str(self.depths[0]), "AAW": str(self.aaw),
                "WB": str(self.widths[1]), "DB": str(self.depths[1]), "BAW": str(self.baw), "RWW": str(self.rww),
                "FB": str(self.fb), "ROM_FILE": f'"{self.rom.path}"', "ROM_DEPTH": str(self.rom.depth),
                "ROM_AW": str(self.rom_aw), "BASE1": str(self.base1), "BASE2": str(self.base2),
                "CAW": str(self.caw)}


@dataclass
class AttnPath:
    """A SpikeAttention path into a layer: `npuc_gather` + `npuc_attn` (scores + S V into lane
    accumulators), `npuc_acc_iter` with TABLE 1 (neuron -> accumulator table, folding the ops after the
    attention) and `npuc_decay` with floor rounding (``(acc * mult) >> shift``).

    ``layer.v.j2`` prints it as is: ``aw`` accumulator width, ``aaw`` its word address width,
    ``lb`` lane index width, ``iter_aw`` the table's address width; ``params`` are the
    `npuc_attn` parameters. Same interface as `Path` where a layer reads both (``source``,
    ``delay``, ``pool``, ``maxpool``)."""

    index: int
    weighted: str  # the SpikeAttention node
    nodes: list[str]  # pre ops of Q, the attention node, post ops
    gather: Gather
    order: str  # "qk_v" (pairs) or "q_kv" (KV first)
    dims: dict[str, int]  # H, N, M, DK, DV
    lanes: int
    kc: int  # value-channel chunks: ceil(DV / lanes)
    aw: int  # accumulator width (signed)
    aaw: int  # accumulator word address width
    params: dict[str, str]  # npuc_attn parameters (Verilog constants); the gather's are gather.params()
    iter_rom: Memory  # neuron -> {lane, accumulator word}
    iter_aw: int
    lb: int  # lane index width
    mult: int
    shift: int
    post_bits: int  # width of acc * mult
    cycles_model: dict[str, float]  # fixed parts of the cycle bound (see report)
    exp: int = 0
    bw: int = 2

    @property
    def source(self) -> EventList:
        return self.gather.sources[0]

    @property
    def delay(self) -> int:
        return self.gather.delays[0]

    @property
    def pool(self) -> None:
        return None

    @property
    def maxpool(self) -> None:
        return None


@dataclass
class Unit:
    """An attention population: `npuc_sc_attn` (StochasticAttention, binary spikes out) or
    `npuc_linattn` (LinearAttention, graded values out)."""

    index: int
    node: str
    ident: str
    module: str
    kind: str  # "sc" or "linear"
    core: str  # the static module it instantiates
    n: int
    shape: tuple[int, ...]
    gather: Gather
    params: dict[str, str]  # core parameters (Verilog constants); the gather's are gather.params()
    ow: int  # output value width
    naw: int  # output index width
    ev: EventList | None
    memories: list[Memory]
    spike: str  # "binary" or "graded"
    dims: dict[str, int]
    lanes: int

    @property
    def state_width(self) -> int:
        return self.ow

    @property
    def ev_dw(self) -> int:
        """Width of an entry the unit appends to its event list: ``{value, output index}``."""
        return self.ow + self.naw

    @property
    def fields(self) -> dict[str, tuple[int, int]]:
        return {"out": (0, self.ow)}


@dataclass
class ArrayUnit:
    """The synapses of a neuron array layer (`npuc_array`): one accumulator register per neuron
    shared by every path (the sharing rule of docs/rtl-backend.md), one ROM word per source event
    holding every neuron's weight shifted by ``exp - e0`` (path ``i``'s rows from ``bases[i]``)."""

    rom: Memory
    ws: int  # weight field width (signed, shifted)
    aw: int  # shared accumulator width (exact)
    pw: int  # payload width of the merged event stream (signed)
    pb: int  # payload bits multiplied when payloads are non-negative
    psigned: bool
    binary: bool  # every path's payload is 1
    pow2: bool  # every nonzero payload is +-2^s, s <= smax: one shifted term per product
    smax: int
    iw: int  # event index width of the merged stream
    eaw: int
    bases: list[int]
    owner: int  # the path whose exponent e0 (the smallest) the shared accumulator carries
    raw: int


@dataclass
class Layer:
    """One LIF population."""

    index: int
    node: str
    ident: str
    module: str
    n: int
    shape: tuple[int, ...]
    paths: list[Path | AttnPath]
    lif: dict[str, str]  # npuc_lif parameters, already formatted as Verilog constants
    cw: int  # neuron compute width (holds every intermediate)
    sw: int  # stored spike width
    vw: int  # stored membrane width
    uw: int  # 0 when u is not stored
    naw: int  # neuron address width
    bias: Memory | None
    bias_const: int  # the neuron bias when it is one value (bias is None)
    bias_w: int
    vmin: Memory | None  # per-neuron membrane floor (vmin_const when one value)
    vmin_const: int | None
    vmin_w: int
    dmin: Memory | None  # bernoulli spikes: threshold table of h - vth, indexed by the LFSR value
    dmin_w: int
    lfsr: dict[str, int] | None  # width, taps, seed (bernoulli)
    ev: EventList | None
    spike: str
    decay: Memory | None = None  # per-neuron decay multipliers (`npuc_lif` mu / mv): lanes `decay_vec`, mv first
    decay_w: int = 2  # bits per lane (signed)
    decay_vec: tuple[str, ...] = ()  # "mv" / "mu": the multipliers that vary per neuron
    nl: int = 1  # neuron lanes: neurons updated per cycle (`layer_lanes.v.j2`); memories hold NL-lane words
    array: ArrayUnit | None = None  # a neuron array layer: its synapses in `npuc_array` (nl > 1 too)
    array_why: str | None = "not checked"  # why it cannot be an array layer (None: it can)
    # a pipelined top's output stage reads a copy of its state by step parity (array layers read out
    # with PROBE=0), so its stage runs one step ahead of the readout
    ro_copy: bool = False

    def neuron_lanes(self, lanes: int) -> int:
        """Neurons per cycle the neuron pass gets at ``lanes`` synapse lanes: ``lanes`` when every
        path is a plain dense `npuc_syn` (neuron n in lane n mod L of accumulator word n / L, so word
        g holds a whole group), else 1 (conv, token-wise dense, attention and max-pooled paths lay
        their accumulators out otherwise; bernoulli spikes step one LFSR per neuron)."""
        ok = self.dmin is None and bool(self.paths) and all(
            isinstance(p, Path) and p.kind == 0 and p.maxpool is None and p.iter_p == 1 and p.cg == self.n
            for p in self.paths)
        return lanes if ok else 1

    @property
    def nk(self) -> int:
        """Groups per accumulator word: the synapse lanes over the neuron lanes (which divide them)."""
        return self.paths[0].lanes // self.nl if self.nl > 1 and self.array is None else 1

    @property
    def groups(self) -> int:
        """Cycles of the neuron pass: words of the state RAM."""
        return -(-self.n // self.nl)

    @property
    def state_width(self) -> int:
        return self.sw + self.vw + self.uw

    @property
    def ev_dw(self) -> int:
        """Width of an entry the layer appends to its event list: ``{spike, neuron index}``."""
        return self.sw + self.naw

    @property
    def fields(self) -> dict[str, tuple[int, int]]:
        """Readable state fields: port -> (lsb, width) in the state word ``{s, v, u}``."""
        out = {"spikes": (self.uw + self.vw, self.sw), "v": (self.uw, self.vw)}
        if self.uw:
            out["i"] = (0, self.uw)
        return out


@dataclass
class Readout:
    """One block of output words per step: ``n`` values of a layer's state field."""

    layer: int
    node: str  # the LIF node
    port: str
    lsb: int
    width: int
    n: int
    probe: bool  # only streamed when the top is built with PROBE=1
    outputs: list[str] = field(default_factory=list)  # Output nodes reading it


@dataclass
class Design:
    """The whole accelerator."""

    graph: str
    top: str
    steps: int | None
    profile: str
    lanes: int
    in_w: int
    out_w: int
    inputs: list[InputUnit]
    layers: list[Layer | Unit]  # stages in topological order
    evlists: list[EventList]
    readouts: list[Readout]
    outputs: list[dict[str, Any]]  # Output nodes: name, index, decoding, layout, readout
    consumers: dict[str, list[tuple[int, str]]]  # evlist ident -> [(stage, port)] reading it
    static_modules: tuple[str, ...] = ()  # the npuc.hdl building blocks this design uses
    pipeline: Any = None  # `npuc.backends.rtl.pipeline.Pipeline` (None: the sequential top)
    pipeline_note: str = ""  # why a requested pipeline fell back to the sequential top
    neuron_lanes: bool = True  # target option neuron_lanes: eligible layers update `lanes` neurons per cycle
    input_events: bool = False  # input=events: a step's input is a count word, then one word per nonzero value

    @property
    def words_in(self) -> int:
        return sum(i.n for i in self.inputs)

    def readout_words(self, probe: bool) -> int:
        return sum(r.n for r in self.readouts if probe or not r.probe)

    def memories(self) -> list[Memory]:
        out: list[Memory] = []
        for lay in self.layers:
            if isinstance(lay, Unit):
                out += [lay.gather.rom, *lay.memories]
                continue
            for p in lay.paths:
                if isinstance(p, AttnPath):
                    out += [p.gather.rom, p.iter_rom]
                    continue
                if lay.array is None:  # an array layer's rows are in its one ROM
                    out.append(p.weights)
                for m in (p.decode, p.bias, p.pool.rom if p.pool else None, p.maxpool.rom if p.maxpool else None):
                    if m is not None:
                        out.append(m)
            for m in (lay.bias, lay.vmin, lay.dmin, lay.decay, lay.array.rom if lay.array else None):
                if m is not None:
                    out.append(m)
        return out
