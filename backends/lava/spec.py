"""The Lava backend's object model: a quantized graph lowered to Lava processes.

`npuc.backends.lava.lowering` builds a `NetworkSpec` from a quantized `Graph`
(every mapping decision happens there); `npuc.backends.lava.render` prints it
as a Python module with jinja2 and `npuc.backends.lava.netx` as a netx HDF5
file. Nothing here imports Lava.

Time model (see docs/lava-backend.md): a population has a *lag* ``L``, the
number of Lava time steps its logical step 0 trails the input stream. Sample
``j`` of a batch occupies input columns ``j*P ... j*P+T-1`` (``P = T + gap``)
and logical step ``t`` of a population with lag ``L`` happens at Lava
``time_step = j*P + t + 1 + L``. A connection whose synapse process adds ``h``
hardware steps (``h = 0`` wired straight into ``a_in``, ``1 + d`` for a
(Delay)Dense/Conv with delay ``d``) and whose graph edges delay by ``delta``
steps satisfies ``L_dst = L_src + h - delta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import LavaMappingError  # noqa: F401  (re-exported)


@dataclass
class Population:
    """A group of neurons or an input stream: one Lava process with an ``s_out`` port.

    Attributes:
        key: Python identifier of the process in the generated module.
        node: the npuc node (an ``Input`` or ``LIF``).
        kind: ``source`` (RingBuffer), ``lif`` (LIFReset), ``ternary`` (TernaryLIF), ``custom``
            (``NpucNeuron``, npuc's custom process with a bit-accurate fixed_pt model) or ``relay``
            (``GradedVec`` relays of a neuron whose fan-in exceeds a core's input axons; ``node`` is
            ``<neuron>.relay``, not a graph node).
        shape: logical (npuc, channels-first) shape per sample.
        lava_shape: the process shape: ``(W, H, C)`` for a ``(C, H, W)`` population,
            otherwise the logical shape.
        index: int array of the logical shape: the Lava flat (C-order) index of each
            logical element.
        graded: whether ``s_out`` carries integer payloads (graded inputs, ternary
            spikes), so that downstream synapses need ``num_message_bits > 0``.
        message_bits: payload width when graded (0 for binary spikes).
        lag: see the module docstring.
        du, dv, vth, vth_lo, bias_mant (Lava layout), bias_exp: neuron parameters.
        custom: for ``kind == "custom"`` (npuc's own ``NpucNeuron`` process, used where no stock
            Lava process computes the neuron exactly): its further parameters (reset, reset_timing,
            compare, spike, levels, reset_value, v_init, v_min in Lava layout, pool) and ``reasons``,
            the features that need it.
        in_shape: the Lava shape of ``a_in`` (differs from ``lava_shape`` when the neuron max-pools
            a convolution's currents).
        max_payload: the largest magnitude ``s_out`` carries (1 for binary and ternary spikes).
    """

    key: str
    node: str
    kind: str
    shape: tuple[int, ...]
    lava_shape: tuple[int, ...]
    index: np.ndarray
    graded: bool = False
    message_bits: int = 0
    lag: int = 0
    du: int | np.ndarray = 0  # per-neuron decays (custom neurons only): arrays in Lava's layout
    dv: int | np.ndarray = 0
    vth: int = 0
    vth_lo: int | None = None
    bias_mant: np.ndarray | None = None
    bias_exp: int = 0
    custom: dict | None = None
    in_shape: tuple[int, ...] | None = None
    max_payload: int = 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Connection:
    """One synapse process (or a direct wire) from a population into a neuron's ``a_in``.

    Attributes:
        key: identifier of the synapse process (``""`` for a direct wire).
        node: the npuc node the weights come from (Dense / Conv2d / SumPool2d),
            or the Add/neuron node for identity paths.
        kind: ``dense`` (weights in Lava layout; DelayDense when delayed), ``token_dense`` (npuc's
            ``NpucTokenDense``: a Dense applied per token, ``weights`` the shared ``[out, in]``), ``conv``
            (Lava Conv), ``sparse`` (ones at ``(r, source_of[r])``: a population added
            without weights; DelaySparse when delayed) or ``wire`` (``s_out`` straight
            into ``a_in``).
        src, dst: population keys.
        delta: graph delay along the path (0, or 1 for a recurrent edge).
        hw_delay: Lava steps the path adds (``L_dst - L_src + delta``).
        weights: Dense ``(n_dst, n_src)`` or Conv ``(O, kW, kH, I/g)`` in Lava layout.
        weight_exp, num_weight_bits: Dense scaling (Lava's own parameters).
        conv: Conv keyword arguments (input_shape, stride, padding, dilation, groups).
        src_port, dst_port: virtual-port suffixes (e.g. ``.flatten()``) applied to
            ``src.s_out`` and to the synapse's ``a_out``.
        source_of: for ``sparse`` / ``wire``: the source Lava element each destination element reads.
        identity / pool: the path has no weights (an Add of spikes) / is a SumPool2d.
        min_hw_delay: 0 when the path can be a direct wire, else 1.
        sparse_weights: ``(rows, cols, values)`` of a weighted ``sparse`` connection (a convolution
            whose path needs a synaptic delay runs as a DelaySparse with its kernel unrolled).
        term: the lowering's record of the synapse path (not rendered).
        flush: the connection must drop the previous sample's last step when a new
            sample starts (recurrent edges): a ``Reset`` zeroes its ``a_buff``.
        attention: for ``kind == "attention"`` (npuc's custom ``NpucAttention`` process, a
            `SpikeAttention` between spike populations and a neuron's ``a_in``): ``inputs``
            (``(population key, gather index of the logical Q/K/V tensor)`` for Q, K, V; ``src`` is
            Q's population), ``fifo`` (the steps each input waits inside the process, set by the
            lags), ``rows`` / ``cols`` (destination Lava element <- attention output element),
            the integer parameters ``a_int``, ``a_frac``, ``mult``, ``shift``, ``score`` and
            ``bound`` (the largest ``|output|``).
        token: for ``kind == "token_dense"``: ``index`` (``[tokens, in]`` source Lava elements), ``rows`` /
            ``cols`` (destination Lava element <- output element ``token * out + o``).
    """

    key: str
    node: str
    kind: str
    src: str
    dst: str
    delta: int = 0
    hw_delay: int = 1
    weights: np.ndarray | None = None
    weight_exp: int = 0
    num_weight_bits: int = 8
    conv: dict = field(default_factory=dict)
    src_port: str = ""
    dst_port: str = ""
    flush: bool = False
    source_of: np.ndarray | None = None
    identity: bool = False
    pool: bool = False
    min_hw_delay: int = 1
    attention: dict | None = None
    sparse_weights: tuple | None = None
    term: object = None
    token: dict | None = None

    @property
    def delay(self) -> int:
        """DelayDense delay ``d`` (total Lava delay ``1 + d``)."""
        return self.hw_delay - 1


@dataclass
class Readout:
    """An observed value: a population's spikes or a neuron state (``v``, ``i`` = Lava's ``u``)
    gathered into a logical shape with ``index`` (Lava flat index per logical element)."""

    name: str
    population: str
    port: str
    index: np.ndarray


@dataclass
class InputSpec:
    """A graph input: how npuc encodes it (stored for `npuc.backends.lava.run`) and its source."""

    node: str
    population: str
    shape: tuple[int, ...]
    layout: str
    index: int
    encoding: dict
    q: dict | None


@dataclass
class OutputSpec:
    """A graph output: the readout it shows and how npuc decodes it."""

    node: str
    readout: str
    decoding: str
    layout: str
    index: int


@dataclass
class NetworkSpec:
    """Everything the emitted module needs, in a fixed (deterministic) order."""

    name: str
    ident: str
    num_steps: int | None
    populations: list[Population]
    connections: list[Connection]
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    readouts: list[Readout]

    def population(self, key: str) -> Population:
        for p in self.populations:
            if p.key == key:
                return p
        raise KeyError(key)

    @property
    def max_lag(self) -> int:
        return max((p.lag for p in self.populations), default=0)

    @property
    def neurons(self) -> list[Population]:
        return [p for p in self.populations if p.kind != "source"]

    def state_gap(self, probe: bool) -> int:
        """1 when a ternary neuron's state is read: its window ``Reset`` then lands on an unused step
        (``Reset`` and ``VarWire`` both act in post-management, in no fixed order)."""
        ternary = {p.key for p in self.populations if p.kind == "ternary"}
        if probe:
            return 1 if ternary else 0
        return 1 if any(r.population in ternary and r.port != "spikes" for r in self.output_readouts()) else 0

    def output_readouts(self) -> list[Readout]:
        names = {o.readout for o in self.outputs}
        return [r for r in self.readouts if r.name in names]
