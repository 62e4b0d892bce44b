"""Lower a quantized npuc graph to the Lava object model (`NetworkSpec`).

Every mapping decision of the Lava backend is made here, in Python, and
every graph feature without an exact Loihi 2 / Lava fixed_pt equivalent is
refused with a `LavaMappingError` naming the node and its op. The rules
(docs/lava-backend.md has the full table and docs/lava-facts.md the measured
Lava behaviour behind each one):

* ``Input`` -> ``RingBuffer`` source; ``current`` encodings send graded
  payloads (``num_message_bits`` on the synapses they feed), spike encodings
  send binary spikes.
* ``LIF`` (binary) -> ``LIFReset``; ``LIF`` (ternary) -> ``TernaryLIF`` plus
  ``Reset`` processes on ``u`` and ``v``, when the neuron is what those stock
  processes compute (``reset="value"`` with ``reset_value=0``,
  ``reset_timing="same"``, ``compare="gt"``, no ``v_min``, ``v_init=0``);
  any other LIF (``_stock_gaps``) -> npuc's custom ``NpucNeuron`` process
  (refused when ``custom=False``, the target option ``stock_only``).
* ``Conv2d`` -> ``MaxPool2d`` of currents -> LIF: the Conv writes its whole
  output into an ``NpucNeuron`` that max-pools its ``a_in``.
* a diagonal SSM state (``meta["ssm_state"]``: a LIF without reset read
  through ``v``, made a never-firing reset-to-0 neuron by the legalize pass)
  -> ``LIFReset`` once an exact integer bound proves it never fires.
* ``Dense`` -> ``Dense`` / ``DelayDense`` with the weight columns and rows
  permuted from npuc's channels-first order to Lava's ``(W, H, C)`` order;
  the weights must already be on Lava's grid (``truncate_weights(clip_weights(W))
  == W``), never silently altered.
* ``Conv2d`` -> ``Conv`` (kernel transposed to ``(O, kW, kH, I/g)`` and flipped,
  stride/padding/dilation swapped to ``(W, H)``); ``weight_exp`` must be 0.
* ``SumPool2d`` -> depthwise ``Conv`` of ones into a neuron.
* ``Reshape`` / ``Permute`` -> index permutations folded into the Dense
  weights or into virtual ports.
* ``Add`` of synapse paths -> several synapse processes into one ``a_in``;
  paths of unequal depth get ``DelayDense`` delays; a population added without
  weights is wired directly or through a ``Sparse`` / ``DelaySparse`` of ones; a
  ``Conv2d`` / ``SumPool2d`` on a shorter path is unrolled into a weighted
  ``DelaySparse`` (Lava's Conv has no delay; exact while its sums stay below
  the Conv's 24-bit wrap).
* a neuron whose fan-in exceeds a core's input axons (``meta["fan_in_relays"]``,
  set by map-cores; Dense paths only) -> relay neurons (stock ``GradedVec``,
  ``vth=0``) that forward exact partial sums as graded spikes, then one Dense of
  ones per path applying its weight exponent: one more Lava step, absorbed by
  the lags like any other depth.
* a recurrent edge (``delay=1``) -> a ``Dense`` between populations of equal
  depth (its one-step Lava delay is the recurrence delay), whose buffer a
  ``Reset`` clears when a new sample starts.
* ``SpikeAttention`` (binary Q, K, V spikes, through Reshape/Permute, into a
  neuron's current) -> npuc's custom ``NpucAttention`` process: it reads the
  three populations' spikes, computes the integer engine's coincidence
  attention and sends the result into the neuron's ``a_in`` one step later,
  like a synapse (refused when ``custom=False``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from ...ir import ops
from ...ir.graph import Graph, Ref
from ...ir.optable import OpTable
from ...ir.values import NumericProfile
from .spec import (
    Connection,
    InputSpec,
    LavaMappingError,
    NetworkSpec,
    OutputSpec,
    Population,
    Readout,
)

# What Lava's fixed_pt models compute (docs/lava-facts.md); a graph quantized for
# another profile has integer semantics Lava cannot reproduce.
LAVA_PROFILE = {
    "weight_scheme": "loihi", "act_bits": 32, "act_overflow": "wrap", "act_shift": 6, "arith_bits": 32,
    "conv_acc_bits": 24, "conv_acc_overflow": "wrap", "conv_weight_exp": False, "decay_bits": 12,
    "du_offset": 1, "dv_offset": 0, "decay_rounding": "trunc0", "u_bits": 24, "u_overflow": "wrap_sym",
    "v_bits": 24, "v_overflow": "saturate_sym", "vth_shift": 6, "synapse_delay": 1,
}
MAX_DELAY = 62  # Loihi 2 synaptic delays 0..62 (Lava's DelayDense accepts 63 and hangs beyond)
CONV_PARAM_MAX = 127
"""lava-nc 0.10's fixed_pt Conv model keeps kernel_size, stride, padding, dilation and groups in int8
Vars: ``groups=128`` wraps to -128 and the Conv then outputs zeros (found on SpikingJelly's CSNN at its
128-channel width: the max pool's depthwise count conv). Beyond it the kernel is unrolled into a Sparse."""
MAX_GRADED_BITS = 24  # graded spike payloads on Loihi 2
VTH_MAX = 2**17 - 1  # unsigned 17-bit threshold mantissa
DU_MAX = 4095  # 12-bit; du = 4095 already removes u completely (decay 4096 - (du + 1) = 0)
DV_MAX = 4096  # 12-bit plus Lava's dv = 4096 "no memory" (accepted by fixed_pt and netx)
INT32 = 2**31
KRON_MAX = 2**22  # weights of a per-token Dense's block-diagonal stock Dense beyond which NpucTokenDense runs it


def _error(node: str, op: object, msg: str) -> LavaMappingError:
    return LavaMappingError(f"node '{node}' ({type(op).__name__}): {msg}")


# -- identifiers -----------------------------------------------------------------------


class Names:
    """Unique Python identifiers derived from node names (``prefix_<sanitized>``)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def make(self, prefix: str, name: str) -> str:
        base = re.sub(r"\W", "_", f"{prefix}_{name}", flags=re.ASCII)
        base = re.sub(r"_+", "_", base).strip("_")  # starts with the prefix: never a keyword
        key, i = base, 1
        while key in self._used:
            i += 1
            key = f"{base}_{i}"
        self._used.add(key)
        return key


def module_ident(name: str) -> str:
    """A file-name-safe identifier for the generated module (never shadows a library)."""
    base = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "net"
    return f"{base}_lava"


# -- layouts -----------------------------------------------------------------------------


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's process shape for a logical shape: ``(C, H, W) -> (W, H, C)``, otherwise unchanged."""
    return tuple(reversed(shape)) if len(shape) == 3 else tuple(shape)


def lava_index(shape: tuple[int, ...]) -> np.ndarray:
    """For each logical element, its flat index in the Lava population (int64, logical shape)."""
    n = int(np.prod(shape))
    if len(shape) == 3:
        return np.arange(n, dtype=np.int64).reshape(lava_shape(shape)).transpose(2, 1, 0).copy()
    return np.arange(n, dtype=np.int64).reshape(shape)


# -- signals: what a node's value is in terms of populations ---------------------------


@dataclass
class _Spikes:
    """A population's spikes seen through shape ops: ``idx`` maps logical positions to Lava flat indices."""

    pop: Population
    idx: np.ndarray
    delay: int = 0


@dataclass
class _State:
    """A neuron's ``v`` or ``i`` port (observable, never a synapse input)."""

    pop: Population
    port: str
    idx: np.ndarray
    delay: int = 0


@dataclass
class _Term:
    """One synapse path into a neuron: ``out_idx`` maps logical positions to the synapse's
    (npuc-order) output element."""

    node: str
    kind: str  # dense | conv | pool | identity
    src: _Spikes
    out_idx: np.ndarray
    delay: int = 0
    matrix: np.ndarray | None = None  # dense: full (npuc out x logical in) matrix; token_dense: the [out, in] weight
    weight_exp: int = 0
    op: object = None
    maxpool: str | None = None  # a MaxPool2d node the reading neuron applies to this conv's currents
    inputs: list[_Spikes] = field(default_factory=list)  # attention: Q, K, V (src is Q)


@dataclass
class _Sum:
    terms: list[_Term] = field(default_factory=list)


Signal = _Spikes | _State | _Sum


def _with_delay(sig: Signal, d: int) -> Signal:
    if d == 0:
        return sig
    if isinstance(sig, _Sum):
        return _Sum([replace(t, delay=t.delay + d) for t in sig.terms])
    return replace(sig, delay=sig.delay + d)


def _reindex(sig: Signal, fn) -> Signal:
    if isinstance(sig, _Sum):
        return _Sum([replace(t, out_idx=fn(t.out_idx)) for t in sig.terms])
    return replace(sig, idx=fn(sig.idx))


# -- the lowering ------------------------------------------------------------------------------


SIGNALS = OpTable("Lava signals")
"""How a node's value reads in terms of populations: ``rule(lowering, node, port) -> Signal``."""


def _stock_gaps(op: ops.LIF, q) -> list[str]:
    """The features of a neuron that lava-nc's stock LIFReset / TernaryLIF do not compute (with why)."""
    gaps = []
    if op.spike not in ("binary", "ternary"):
        gaps.append(f"{op.spike} spikes: Lava's stock neurons are binary LIF and ternary TernaryLIF only")
    if op.reset != "value" or q.reset_value != 0:
        what = f"reset '{op.reset}'" if op.reset != "value" else f"reset to {q.reset_value}"
        gaps.append(f"{what}: Lava's LIF and TernaryLIF reset v to 0 (reset='value', reset_value=0)")
    if op.reset_timing != "same":
        gaps.append(f"reset timing '{op.reset_timing}': Lava resets in the step of the spike ('same')")
    if op.compare != "gt":
        gaps.append(f"compare '{op.compare}': Lava spikes when v > threshold ('gt')")
    if q.v_min is not None:
        gaps.append("v_min: Lava's LIF has no membrane floor")
    if q.v_init != 0:
        gaps.append(f"v_init={q.v_init}: every sample starts at v = 0 on Loihi 2 (LIFReset)")
    if op.charge == "previous":
        gaps.append("charge 'previous' (an alpha neuron): Lava's LIF charges v with the step's own current and "
                    "never clears the current")
    varying = [f for f in ("dv", "du") if isinstance(getattr(q, f), np.ndarray)]
    if varying:
        gaps.append(f"per-neuron decays ({', '.join(varying)} vectors, e.g. a learned per-neuron beta): Lava's LIF "
                    "has one du and one dv per population")
    return gaps


def _has_bias(op: object) -> bool:
    q = getattr(op, "q", None)
    return q is not None and getattr(q, "bias", None) is not None and bool(np.any(q.bias != 0))


def _decay_layout(d, shape) -> int | np.ndarray:
    """A QLIF decay for Lava: the integer, or the per-neuron values in Lava's layout (`_lava_layout`)."""
    return _lava_layout(np.broadcast_to(d, shape)) if isinstance(d, np.ndarray) else d


def _lava_layout(a: np.ndarray) -> np.ndarray:
    """A per-neuron array in Lava's ``(W, H, C)`` layout (others unchanged), int64."""
    return np.ascontiguousarray(a.transpose(2, 1, 0) if a.ndim == 3 else a).astype(np.int64)


class _Lowering:
    def __init__(self, graph: Graph, custom: bool = True) -> None:
        self.g = graph
        self.custom = custom
        self.prof: NumericProfile = graph.profile  # type: ignore[assignment]
        self.names = Names()
        self.pops: dict[str, Population] = {}
        self.memo: dict[tuple[str, str], Signal] = {}

    # populations ------------------------------------------------------------------------
    def populations(self) -> None:
        for name in self.g.topo_order():
            node = self.g[name]
            if isinstance(node.op, ops.Input):
                self.pops[name] = self._source(name, node.op)
            elif isinstance(node.op, ops.LIF):
                self.pops[name] = self._neuron(name, node.op, node.shape)

    def _source(self, name: str, op: ops.Input) -> Population:
        shape = tuple(op.shape)
        graded = op.encoding.kind == "current"
        bits = 0
        if graded:
            if op.q is None:
                raise _error(name, op, "a 'current' input needs integer parameters (q): run the quantize pass")
            bits = op.q.bits
            if bits > MAX_GRADED_BITS:
                raise _error(name, op, f"input currents of {bits} bits exceed Loihi 2's {MAX_GRADED_BITS}-bit graded "
                                       "spikes: quantize inputs to at most 24 bits")
        return Population(self.names.make("src", name), name, "source", shape, lava_shape(shape), lava_index(shape),
                          graded=graded, message_bits=bits)

    def _neuron(self, name: str, op: ops.LIF, shape: tuple[int, ...]) -> Population:
        q = op.q
        if q is None:
            raise _error(name, op, "no integer parameters (q): run the quantize pass for loihi2")
        pool = self._current_maxpool(name)
        reasons = _stock_gaps(op, q) + ([f"max pool '{pool}' of currents"] if pool else [])
        biased = self._biased_dense(name)
        if biased:
            reasons.append(f"the bias of '{biased}' into the current: Lava's LIF adds biases to the membrane only")
        if reasons and not self.custom:
            raise _error(name, op, reasons[0])
        if op.spike == "bernoulli":
            raise _error(name, op, "bernoulli spikes: npuc has no Loihi 2 neuron process for them (they need the "
                                   "integer engine's LFSR streams); compile for --target fpga")
        checks = [("du", q.du, 0, DU_MAX), ("dv", q.dv, 0, DV_MAX), ("vth", q.vth, 1 if op.spike == "multilevel" else 0,
                                                                      VTH_MAX),
                  ("bias_exp", q.bias_exp, self.prof.bias_exp_min, self.prof.bias_exp_max)]
        if op.spike == "ternary":
            if q.vth_lo is None:
                raise _error(name, op, "ternary spikes need q.vth_lo")
            checks.append(("vth_lo", q.vth_lo, -VTH_MAX, q.vth))
        for field_name, v, lo, hi in checks:
            for x in (int(np.min(v)), int(np.max(v))):  # per-neuron decays: every value
                if not lo <= x <= hi:
                    raise _error(name, op, f"q.{field_name}={x} is outside Loihi 2's range [{lo}, {hi}]")
        bm_hi = 2 ** (self.prof.bias_mant_bits - 1)
        bias = np.broadcast_to(np.asarray(q.bias_mant, np.int64), shape)
        if bias.size and (bias.min() < -bm_hi or bias.max() > bm_hi - 1):
            raise _error(name, op, f"q.bias_mant in [{bias.min()}, {bias.max()}] exceeds Loihi 2's "
                                   f"{self.prof.bias_mant_bits}-bit mantissa [{-bm_hi}, {bm_hi - 1}]")
        kind = "custom" if reasons else ("lif" if op.spike == "binary" else "ternary")
        payload = self._max_payload(op, q)
        pop = Population(
            self.names.make("lif", name), name, kind, tuple(shape), lava_shape(shape), lava_index(shape),
            graded=op.spike != "binary", message_bits=0 if op.spike == "binary" else max(2, payload.bit_length() + 1),
            du=_decay_layout(q.du, shape), dv=_decay_layout(q.dv, shape), vth=q.vth, vth_lo=q.vth_lo, bias_exp=q.bias_exp,
            bias_mant=_lava_layout(bias), max_payload=payload,
        )
        pop.in_shape = pop.lava_shape
        if kind == "custom":
            pop.custom = self._custom_params(name, op, q, shape, pool, reasons)
            if pool:
                pop.in_shape = lava_shape(self.g[self.g[pool].inputs[0].node].shape)
        return pop

    def _biased_dense(self, name: str) -> str | None:
        """A Dense with a (quantized) bias among the synapses feeding neuron ``name`` directly or
        through sums and reshapes (quantize leaves such biases only on CUBA neurons' inputs)."""
        todo, seen = [r.node for r in self.g[name].inputs], set()
        while todo:
            node = self.g[todo.pop()]
            if node.name in seen:
                continue
            seen.add(node.name)
            if isinstance(node.op, ops.Dense) and _has_bias(node.op):
                return node.name
            if isinstance(node.op, (ops.Add, ops.Reshape, ops.Permute)):
                todo += [r.node for r in node.inputs]
        return None

    def _current_maxpool(self, name: str) -> str | None:
        """The MaxPool2d node of convolution currents this neuron reads (the legalize pass allows it only
        as the neuron's single input)."""
        ref = self.g[name].inputs[0]
        node = self.g[ref.node]
        return ref.node if isinstance(node.op, ops.MaxPool2d) and not ref.delay else None

    def _max_payload(self, op: ops.LIF, q) -> int:
        if op.spike != "multilevel":
            return 1
        top = (2**23 - 1) // (q.vth << self.prof.vth_shift)  # v saturates at 2^23 - 1
        return min(top, op.levels - 1) if op.levels else top

    def _custom_params(self, name: str, op: ops.LIF, q, shape, pool: str | None, reasons: list[str]) -> dict:
        v_min = None
        if q.v_min is not None:
            v_min = _lava_layout(np.broadcast_to(np.asarray(q.v_min, np.int64), shape))
        pool_args = None
        if pool:
            mp = self.g[pool].op  # (W, H) order, as Lava's layout
            pool_args = (tuple(int(k) for k in mp.kernel[::-1]), tuple(int(k) for k in mp.stride[::-1]),
                         tuple(int(k) for k in mp.padding[::-1]))
        return {"reset": op.reset, "reset_value": int(q.reset_value), "reset_timing": op.reset_timing,
                "compare": op.compare, "spike": op.spike, "levels": int(op.levels or 0), "v_init": int(q.v_init),
                "v_min": v_min, "pool": pool_args, "charge": op.charge, "reasons": reasons}

    # signals ------------------------------------------------------------------------------
    def signal(self, ref: Ref) -> Signal:
        node = self.g[ref.node]
        port = node.port(ref)
        key = (ref.node, port)
        if key not in self.memo:
            self.memo[key] = self._signal(ref.node, port)
        return _with_delay(self.memo[key], ref.delay)

    def _signal(self, name: str, port: str) -> Signal:
        node = self.g[name]
        rule = SIGNALS.lookup(node.op)
        if rule is None:
            raise _error(name, node.op, _UNSUPPORTED.get(type(node.op).__name__, "has no exact Loihi 2 mapping in Lava"))
        return rule(self, node, port)

    def _terms(self, sig: Signal, name: str, op: object) -> list[_Term]:
        if isinstance(sig, _Sum):
            return list(sig.terms)
        if isinstance(sig, _State):
            raise _error(name, op, f"reads the '{sig.port}' port of neuron '{sig.pop.node}': only spikes travel "
                                   "between Lava populations")
        n = sig.idx.size
        return [_Term(name, "identity", replace(sig, delay=0), np.arange(n).reshape(sig.idx.shape), sig.delay)]

    def _weighted(self, name: str, op, src: _Spikes, out_shape) -> _Term:
        out_idx = np.arange(int(np.prod(out_shape))).reshape(out_shape)
        if isinstance(op, ops.SumPool2d):
            return _Term(name, "pool", replace(src, delay=0), out_idx, src.delay, op=op)
        q = op.q
        if q is None:
            raise _error(name, op, "no integer parameters (q): run the quantize pass for loihi2")
        if _has_bias(op) and not isinstance(op, ops.Dense):
            raise _error(name, op, "synapse bias: Lava's Conv has no bias; the quantize pass folds convolution "
                                   "biases into the neuron's bias_mant")
        if isinstance(op, ops.Conv2d):
            if q.weight_exp != 0:
                raise _error(name, op, f"weight_exp={q.weight_exp}: Lava's Conv ignores weight_exp, so it must be 0")
            return _Term(name, "conv", replace(src, delay=0), out_idx, src.delay, op=op)
        lead = int(np.prod(src.idx.shape[:-1]))
        w = np.asarray(q.weight, np.int64)
        if lead > 1 and lead * lead * w.size > KRON_MAX:
            if not self.custom:
                raise _error(name, op, f"a Dense applied per token ({lead} tokens, weight {tuple(w.shape)}): as a stock "
                                       f"Dense it needs a block-diagonal matrix of {lead * lead * w.size} weights; npuc's "
                                       "NpucTokenDense keeps one weight (drop stock_only)")
            return _Term(name, "token_dense", replace(src, delay=0), out_idx, src.delay, w, q.weight_exp, op)
        full = w if lead == 1 else np.kron(np.eye(lead, dtype=np.int64), w)
        return _Term(name, "dense", replace(src, delay=0), out_idx, src.delay, full, q.weight_exp, op)

    # connections ----------------------------------------------------------------------------
    def connections(self) -> list[Connection]:
        conns: list[Connection] = []
        for pop in list(self.pops.values()):
            if pop.kind == "source":
                continue
            node = self.g[pop.node]
            (ref,) = node.inputs
            terms = self._terms(self.signal(ref), pop.node, node.op)
            pooled = [t for t in terms if t.maxpool]
            if pooled and (len(terms) != 1 or pop.custom is None or pop.custom["pool"] is None):
                raise _error(pooled[0].maxpool, self.g[pooled[0].maxpool].op, f"max pool of currents into "
                             f"'{pop.node}' must be that neuron's only input")
            if node.meta.get("fan_in_relays"):
                conns += self._relayed(pop, terms, node.meta["fan_in_relays"])
                continue
            for term in terms:
                conns.append(self._connection(term, pop))
        return conns

    def _relayed(self, dst: Population, terms: list[_Term], relays: dict) -> list[Connection]:
        """A neuron fed by more sources than a core has input axons (``meta["fan_in_relays"]``, set by
        map-cores): each block of sources (a chunk of one population, in its row-major order) drives
        one relay per destination neuron through a Sparse with ``weight_exp = 0`` (only its block's rows:
        Lava's Sparse computes what the Dense of that matrix would); the relays (one stock
        ``GradedVec`` process, ``vth = 0``: it forwards ``a_in`` as a graded spike) send these exact
        partial sums to the neuron through one Dense of ones per path that applies the path's weight
        exponent to its total, so the neuron's input equals the paths' Denses', one Lava step later."""
        n = dst.size
        units = []  # (term, relay block index, Lava-layout weights dst.size x src.size)
        for t in terms:
            op = t.op if t.op is not None else self.g[t.node].op
            if t.kind == "token_dense":
                raise _error(t.node, op, f"a Dense applied per token reaches '{dst.node}', whose fan-in exceeds "
                                         f"{relays['axons']} input axons per core: relays are built for block-diagonal "
                                         "Dense paths only (their matrix is too large here)")
            if t.kind != "dense":
                raise _error(t.node, op, f"reaches '{dst.node}', whose fan-in exceeds {relays['axons']} input axons "
                                         "per core, through a non-Dense path; only Dense paths are split over relays")
            if t.delay:
                raise _error(t.node, op, f"a delayed edge into '{dst.node}', whose fan-in needs relays: relays "
                                         "add a Lava step a recurrent edge cannot absorb")
            if _has_bias(op):
                self._current_bias(t, dst, op)
            src = t.src.pop
            w_rows = np.zeros((n, t.matrix.shape[1]), np.int64)
            w_rows[dst.index.ravel()] = t.matrix[t.out_idx.ravel()]
            w = np.zeros((n, src.size), np.int64)
            w[:, t.src.idx.ravel()] = w_rows
            logical = np.empty(src.size, np.int64)
            logical[src.index.ravel()] = np.arange(src.size)
            covered = np.zeros(src.size, bool)
            for source, lo, hi in relays["blocks"]:
                cols = (logical >= lo) & (logical < hi) & (source == src.node)
                covered |= cols
                if np.any(w[:, cols]):
                    units += [(t, op, part) for part in _graded_parts(np.where(cols[None, :], w, 0), src, logical)]
            if np.any(w[:, ~covered]):
                raise _error(dst.node, self.g[dst.node].op, f"meta['fan_in_relays'] leaves synapses from '{src.node}' "
                                                            "without a relay block: re-run map-cores")
        size = len(units) * n
        relay = Population(self.names.make("relay", dst.node), f"{dst.node}.relay", "relay", (size,), (size,),
                           np.arange(size, dtype=np.int64), graded=True, message_bits=MAX_GRADED_BITS)
        conns, bound = [], 0
        for u, (t, op, w) in enumerate(units):  # a Sparse: block u writes relays u*n .. u*n+n-1 only
            bound = max(bound, int(np.abs(w).sum(1).max(initial=0)) * _max_abs_input(t.src.pop))
            rows, cols = np.nonzero(w)
            c = Connection(self.names.make("syn", f"{t.node}_relay{u}"), t.node, "sparse", t.src.pop.key, relay.key,
                           sparse_weights=(rows + u * n, cols, w[rows, cols]), weight_exp=0,
                           num_weight_bits=lava_weight_bits(w, t.node, op))
            conns.append(c)
        if bound >= 2 ** (MAX_GRADED_BITS - 1):
            raise _error(dst.node, self.g[dst.node].op, f"relayed partial sums reach {bound}, beyond Loihi 2's "
                                                        f"{MAX_GRADED_BITS}-bit graded spikes")
        relay.max_payload = max(bound, 1)
        self.pops[relay.node] = relay
        for term in dict.fromkeys(id(t) for t, _, _ in units):  # each path shifts its own total, as in the IR
            ones = np.zeros((n, size), np.int64)
            for u, (t, _, _) in enumerate(units):
                if id(t) == term:
                    ones[np.arange(n), u * n + np.arange(n)] = 1
                    e = t.weight_exp
            conns.append(Connection(self.names.make("syn", f"{relay.node}_{dst.node}"), dst.node, "dense", relay.key,
                                    dst.key, weights=ones, weight_exp=e,
                                    num_weight_bits=lava_weight_bits(ones, dst.node, self.g[dst.node].op)))
        return conns

    def _connection(self, t: _Term, dst: Population) -> Connection:
        src = t.src.pop
        key = self.names.make("syn", t.node if t.kind != "identity" else f"{src.node}_to_{dst.node}")
        c = Connection(key, t.node, t.kind, src.key, dst.key, delta=t.delay)
        op = t.op if t.op is not None else self.g[t.node].op
        if t.kind == "identity":
            # dst Lava element r reads src Lava element src_of[r]: a wire, or a Sparse of ones
            src_of = np.empty(dst.size, np.int64)
            src_of[dst.index.ravel()] = t.src.idx.ravel()
            c.identity, c.source_of = True, src_of
            direct = src.size == dst.size and np.array_equal(src_of, np.arange(dst.size)) and t.delay == 0
            c.min_hw_delay = 0 if direct else 1
            if direct and src.lava_shape != dst.lava_shape:
                c.src_port = f".reshape({dst.lava_shape!r})"
            return c
        if t.kind == "attention":
            return self._attention(t, c, dst, op)
        if t.kind == "token_dense":
            return self._token_dense(t, c, dst, op)
        if t.kind == "dense":
            if _has_bias(op):
                self._current_bias(t, dst, op)
            w_rows = np.zeros((dst.size, t.matrix.shape[1]), np.int64)
            w_rows[dst.index.ravel()] = t.matrix[t.out_idx.ravel()]
            w = np.zeros((dst.size, src.size), np.int64)
            w[:, t.src.idx.ravel()] = w_rows
            c.weights, c.weight_exp = w, t.weight_exp
            if not self.prof.weight_exp_min <= t.weight_exp <= self.prof.weight_exp_max:
                raise _error(t.node, op, f"weight_exp={t.weight_exp} is outside Loihi 2's range "
                                         f"[{self.prof.weight_exp_min}, {self.prof.weight_exp_max}]")
            c.num_weight_bits = lava_weight_bits(np.asarray(op.q.weight), t.node, op)  # same sign mode as w
            return c
        # conv and pool: Lava's Conv reads (W, H, C) and writes (W_out, H_out, C_out)
        in_shape = tuple(t.src.idx.shape)
        if len(in_shape) != 3:
            raise _error(t.node, op, f"expects a (C, H, W) input, got {in_shape}")
        c.kind, c.pool, c.term = "conv", t.kind == "pool", t
        c.src_port = self._conv_in_port(t, in_shape, op)
        cin = in_shape[0]
        if t.kind == "pool":
            kh, kw = op.kernel
            weight = np.ones((cin, kw, kh, 1), np.int64)
            c.conv = dict(input_shape=lava_shape(in_shape), stride=op.stride[::-1], padding=op.padding[::-1],
                          dilation=(1, 1), groups=cin)
            out_c = cin
        else:
            w = np.asarray(op.q.weight, np.int64)
            lava_weight_bits(w.reshape(w.shape[0], -1), t.node, op)  # Loihi 2 stores conv weights like Dense ones
            weight = np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])
            c.conv = dict(input_shape=lava_shape(in_shape), stride=op.stride[::-1], padding=op.padding[::-1],
                          dilation=op.dilation[::-1], groups=op.groups)
            out_c = w.shape[0]
        c.weights = weight
        c.conv = {k: tuple(int(x) for x in v) if isinstance(v, tuple) else int(v) for k, v in c.conv.items()}
        out_shape = self.g[t.node].shape
        if out_shape[0] != out_c:
            raise _error(t.node, op, f"output channels {out_shape[0]} differ from the kernel's {out_c}")
        c.dst_port = self._conv_out_port(t, out_shape, dst, op)
        self._conv_bounds(t, c, src, op)
        return c

    def _attention(self, t: _Term, c: Connection, dst: Population, op: ops.SpikeAttention) -> Connection:
        """An ``NpucAttention`` process: gathers Q, K, V from their populations' ``s_out`` and writes the
        integer attention into ``dst.a_in`` (``rows[r] <- cols[r]``), one step later like a synapse."""
        if t.delay:
            raise _error(t.node, op, f"its output reaches '{dst.node}' over a delayed edge; NpucAttention sends "
                                     "the current step's result only")
        q = op.q
        n_keys, dk = t.inputs[1].idx.shape[-2:]
        s_max = dk * max(1 << q.a_frac, q.a_int)  # one score: matches weigh 2^a_frac, (0, 0) pairs a_int
        y_max = n_keys * s_max
        if y_max * abs(q.mult) >= 2**53:
            raise _error(t.node, op, f"attention sums up to {y_max} times mult {q.mult} exceed the integer engine's "
                                     "exact range (2^53)")
        bound = (y_max * abs(q.mult) >> q.shift) + 1  # floor of a negative product rounds away from 0
        c.attention = {
            "inputs": [(s.pop.key, np.asarray(s.idx, np.int64)) for s in t.inputs], "fifo": [0, 0, 0],
            "rows": np.asarray(dst.index, np.int64).ravel(), "cols": np.asarray(t.out_idx, np.int64).ravel(),
            "a_int": int(q.a_int), "a_frac": int(q.a_frac), "mult": int(q.mult), "shift": int(q.shift),
            "score": op.score, "bound": int(bound),
            "dims": {"heads": int(np.prod(t.inputs[0].idx.shape[:-2])), "queries": int(t.inputs[0].idx.shape[-2]),
                     "keys": int(n_keys), "dk": int(dk), "dv": int(t.inputs[2].idx.shape[-1])},
        }
        return c

    def _token_dense(self, t: _Term, c: Connection, dst: Population, op: ops.Dense) -> Connection:
        """An ``NpucTokenDense`` process: the Dense's ``[out, in]`` weight applied to every token, as the
        block-diagonal stock Dense would (same sums, weight exponent and int32 channel), without its
        ``tokens^2 x out x in`` matrix. ``index`` gathers the ``[tokens, in]`` input from the source's
        Lava elements; ``a_out[rows[r]] = y.flat[cols[r]]``."""
        if _has_bias(op):
            self._current_bias(t, dst, op)
        if not self.prof.weight_exp_min <= t.weight_exp <= self.prof.weight_exp_max:
            raise _error(t.node, op, f"weight_exp={t.weight_exp} is outside Loihi 2's range "
                                     f"[{self.prof.weight_exp_min}, {self.prof.weight_exp_max}]")
        c.num_weight_bits = lava_weight_bits(np.asarray(op.q.weight), t.node, op)  # the same grid check as Dense
        fin = t.matrix.shape[1]
        c.weights, c.weight_exp = t.matrix, t.weight_exp
        c.token = {"index": np.asarray(t.src.idx, np.int64).reshape(-1, fin), "rows": dst.index.ravel().astype(np.int64),
                   "cols": np.asarray(t.out_idx, np.int64).ravel()}
        return c

    def _current_bias(self, t: _Term, dst: Population, op) -> None:
        """A Dense bias (accumulator units) added by the destination's custom process to its input
        ``a`` every step, as the integer engine adds it to the accumulated sum (``bias_a``)."""
        if dst.custom is None:
            raise _error(t.node, op, f"synapse bias into the current of '{dst.node}' needs npuc's custom neuron "
                                     "process (the target option stock_only keeps stock processes)")
        late = [n.name for n in self.g for r in n.inputs if r.node == t.node and r.delay]
        if late:
            raise _error(t.node, op, f"'{late[0]}' reads this biased synapse one step late: the bias would be "
                                     "missing from the first step; delay the synapse's input instead")
        lead = t.out_idx.size // op.q.weight.shape[0]
        b = np.tile(np.asarray(op.q.bias, np.int64), lead)
        flat = dst.custom.get("bias_a")
        flat = np.zeros(dst.size, np.int64) if flat is None else flat.reshape(-1)
        flat[dst.index.ravel()] += b[t.out_idx.ravel()]
        dst.custom["bias_a"] = flat.reshape(dst.lava_shape)

    def _conv_in_port(self, t: _Term, in_shape, op) -> str:
        src = t.src.pop
        idx = t.src.idx
        if np.array_equal(idx, lava_index(in_shape)):
            return "" if src.lava_shape == lava_shape(in_shape) else f".reshape({lava_shape(in_shape)!r})"
        if np.array_equal(idx, np.arange(idx.size).reshape(in_shape)):
            return f".reshape({tuple(in_shape)!r}).transpose([2, 1, 0])"
        raise _error(t.node, op, f"reads population '{src.node}' through a permutation Lava's Conv cannot "
                                 "express (only a (C, H, W) population or a reshaped flat one)")

    def _conv_out_port(self, t: _Term, out_shape, dst: Population, op) -> str:
        if t.maxpool:  # the neuron's a_in is the convolution's whole (W, H, C) output
            return ""
        conv_lava = lava_index(out_shape).ravel()[t.out_idx.ravel()]
        if np.array_equal(conv_lava, dst.index.ravel()):
            return "" if dst.lava_shape == lava_shape(out_shape) else f".reshape({dst.lava_shape!r})"
        if np.array_equal(t.out_idx.ravel(), dst.index.ravel()):
            tail = f".reshape({dst.lava_shape!r})"
            return ".transpose([2, 1, 0])" + tail
        raise _error(t.node, op, f"its output reaches neuron '{dst.node}' through a permutation Lava's Conv "
                                 "cannot express")

    def _conv_bounds(self, t: _Term, c: Connection, src: Population, op) -> None:
        """Lava's Conv sums in float64 (scipy), casts to int32, then wraps to 24 bits: exact while
        every sum stays below 2^31 (beyond, numpy's cast is undefined). npuc's sum pool never wraps."""
        w = np.abs(np.asarray(c.weights, np.int64))
        bound = int(w.reshape(w.shape[0], -1).sum(1).max(initial=0)) * _max_abs_input(src)
        if t.kind == "pool" and bound >= 2**23:
            raise _error(t.node, op, f"sum pooling of inputs up to {_max_abs_input(src)} reaches {bound}: Lava's "
                                     "Conv wraps at 24 bits, npuc's sum pool does not")
        if bound >= INT32:
            raise _error(t.node, op, f"sums up to {bound} reach 2^31: Lava's Conv casts them to int32 (undefined "
                                     "beyond) before its 24-bit wrap; use fewer input bits or smaller weights")

    # timing ---------------------------------------------------------------------------------
    def lags(self, conns: list[Connection]) -> None:
        keys = [p.key for p in self.pops.values()]
        lag = dict.fromkeys(keys, 0)
        edges = [(c.src, c.dst, c.min_hw_delay - c.delta) for c in conns]
        edges += [(k, c.dst, 1) for c in conns if c.attention for k, _ in c.attention["inputs"][1:]]
        for _ in range(len(keys) + 1):
            changed = False
            for s, d, w in edges:
                if lag[s] + w > lag[d]:
                    lag[d], changed = lag[s] + w, True
            if not changed:
                break
        else:
            names = self._positive_cycle(edges)
            raise LavaMappingError(
                f"recurrent loop through {names} needs more Lava steps than its delay: every Lava synapse adds one "
                "step, so a delay=1 edge can only close a loop of one synapse (a self or lateral connection "
                "between neurons at the same depth)")
        for p in self.pops.values():
            p.lag = lag[p.key]
        for c in conns:
            c.hw_delay = lag[c.dst] - lag[c.src] + c.delta
            if c.attention:  # each input waits in the process until the latest one arrives
                c.attention["fifo"] = [lag[c.dst] - lag[k] - 1 for k, _ in c.attention["inputs"]]
            self._finish(c)

    def _positive_cycle(self, edges: list[tuple[str, str, int]]) -> list[str]:
        """Populations on a loop whose Lava delay exceeds its graph delay (in loop order)."""
        import networkx as nx

        dg = nx.DiGraph()
        for s, d, w in edges:
            dg.add_edge(s, d, w=max(w, dg.edges[s, d]["w"]) if dg.has_edge(s, d) else w)
        node = {p.key: p.node for p in self.pops.values()}
        for cyc in nx.simple_cycles(dg):
            if sum(dg.edges[a, b]["w"] for a, b in zip(cyc, cyc[1:] + cyc[:1])) > 0:
                k = cyc.index(min(cyc, key=lambda c: node[c]))
                return [node[c] for c in cyc[k:] + cyc[:k]]
        return sorted(node.values())  # unreachable: a positive loop exists when relaxation does not settle

    def _finish(self, c: Connection) -> None:
        src = next(p for p in self.pops.values() if p.key == c.src)
        dst = next(p for p in self.pops.values() if p.key == c.dst)
        op = self.g[c.node].op
        where = f"path '{src.node}' -> '{dst.node}'"
        if c.identity and c.hw_delay == 0:
            c.kind, c.key = "wire", ""
            return
        if c.kind == "attention":
            return
        if c.identity:  # ones are exact at 8 bits (excitatory)
            c.kind, c.src_port = "sparse", ""
        if c.kind in ("dense", "sparse", "token_dense"):
            c.src_port = ".flatten()" if len(src.lava_shape) > 1 else ""
            c.dst_port = f".reshape({dst.lava_shape!r})" if len(dst.lava_shape) > 1 else ""
        if c.delta > 1:
            raise _error(c.node, op, f"{where} has a delay of {c.delta} steps; npuc graphs use delays of 0 or 1")
        if c.delta == 1:
            if c.hw_delay != 1 or c.kind == "conv":  # (a flushed NpucTokenDense keeps its state in a_buff only)
                raise _error(c.node, op, f"{where} is a delayed (recurrent) edge that needs {c.hw_delay} Lava steps "
                                         "through a " + ("Conv" if c.kind == "conv" else "delayed synapse") + "; only a "
                                         "one-step Dense between neurons of equal depth carries a delayed edge "
                                         "exactly across sample boundaries")
            c.flush = True
        if c.kind == "conv" and (c.hw_delay != 1 or _conv_param_overflow(c.conv)):
            self._conv_as_sparse(c, src, dst, op, where)
        if c.hw_delay - 1 > MAX_DELAY:
            raise _error(c.node, op, f"{where} needs a synaptic delay of {c.hw_delay - 1} steps; Loihi 2 allows "
                                     f"at most {MAX_DELAY}")
        if c.kind in ("dense", "token_dense") and src.graded:
            xmax = _max_abs_input(src)
            bound = int(np.abs(c.weights).sum(1).max(initial=0)) * xmax
            if bound >= INT32 and (c.weight_exp < 0 or c.hw_delay > 1):
                raise _error(c.node, op, f"graded inputs up to {xmax} times these weights reach {bound} >= 2^31: "
                                         "Lava's graded Dense sums in int32 before the weight exponent, so the "
                                         "result would differ from the exact sum; use fewer input bits")

    def _conv_as_sparse(self, c: Connection, src: Population, dst: Population, op, where: str) -> None:
        """A convolution Lava's Conv cannot run, unrolled into a stock ``Sparse`` (``DelaySparse``
        when delayed): on a path shorter than the others into its neuron (Lava's Conv has no delay;
        DelaySparse waits the missing steps, up to 62), or with a parameter beyond the Conv model's
        int8 Vars (`CONV_PARAM_MAX`). Exact while no sum reaches Lava Conv's 24-bit wrap (checked),
        since then both compute the same integer sums."""
        t = c.term
        need = (f"needs a delay of {c.hw_delay - 1} steps, which Lava's Conv lacks" if c.hw_delay != 1 else
                f"has a convolution parameter above {CONV_PARAM_MAX} ({c.conv}), which Lava's Conv keeps in int8")
        if t is None or t.maxpool:
            raise _error(c.node, op, f"{where} {need}, and a Conv feeding a max pool of currents cannot be unrolled "
                                     "into a Sparse: " + ("balance the path depths" if c.hw_delay != 1 else
                                                          f"use at most {CONV_PARAM_MAX} channels per group"))
        rows, cols, vals = _conv_pairs(op, t.src.idx.shape, self.g[t.node].shape, t.kind == "pool")
        bound = int(np.bincount(rows, np.abs(vals), minlength=1).max(initial=0)) * _max_abs_input(src)
        if bound >= 2 ** (self.prof.conv_acc_bits - 1):
            raise _error(c.node, op, f"{where} {need}, and its sums (up to {bound}) reach the Conv's 24-bit wrap, so "
                                     "an unrolled Sparse would differ" +
                                     (": balance the path depths" if c.hw_delay != 1 else ""))
        inv = np.empty(t.out_idx.size, np.int64)
        inv[t.out_idx.ravel()] = np.arange(t.out_idx.size)
        c.sparse_weights = (dst.index.ravel()[inv[rows]], t.src.idx.ravel()[cols], vals)
        c.kind, c.weights, c.weight_exp = "sparse", None, 0
        c.src_port = ".flatten()" if len(src.lava_shape) > 1 else ""
        c.dst_port = f".reshape({dst.lava_shape!r})" if len(dst.lava_shape) > 1 else ""
        c.num_weight_bits = lava_weight_bits(vals[None, :], c.node, op) if vals.size else 8

    # diagonal SSM states ------------------------------------------------------------------------
    def ssm_states(self, conns: list[Connection]) -> None:
        """Prove that every SSM state neuron (``meta["ssm_state"]``, set by the legalize pass for a
        LIF without reset read through its membrane) never fires, or refuse it.

        Such a neuron runs as a reset-to-0 LIFReset; it keeps the no-reset semantics only if
        ``v > vth << 6`` never holds. With ``A`` the largest ``|a_in|`` (per connection: absolute
        row sums of the integer weights times the largest source payload, after the weight
        exponent, rounded away from zero), Lava's fixed_pt update (lava-facts section 1) gives::

            |u_t| <= |u_{t-1}| (4095 - du) / 4096 + (A << 6)
            |v_t| <= |v_{t-1}| (4096 - dv) / 4096 + |u_t| + max|bias_mant| << bias_exp

        over the graph's ``num_steps`` (LIFReset zeroes u and v at every sample start), or the
        geometric limit when the graph has no step count. Refused when the bound of ``v``
        exceeds ``vth << 6`` or that of ``u`` reaches its 24-bit wrap.
        """
        for pop in self.pops.values():
            if pop.kind in ("source", "relay"):
                continue
            node = self.g[pop.node]
            if "ssm_state" not in node.meta:
                continue
            a_in = 0
            for c in conns:
                if c.dst != pop.key:
                    continue
                src = next(p for p in self.pops.values() if p.key == c.src)
                xmax = _max_abs_input(src)
                if c.kind == "attention":
                    a_in += c.attention["bound"]
                    continue
                if c.kind in ("wire", "sparse"):
                    a_in += xmax
                    continue
                w = np.abs(np.asarray(c.weights, np.int64))
                acc = int(w.reshape(w.shape[0], -1).sum(1).max(initial=0)) * xmax
                e = c.weight_exp if c.kind in ("dense", "token_dense") else 0
                a_in += acc << e if e >= 0 else -(-acc >> -e)
            u_in = a_in << self.prof.act_shift
            bias = int(np.max(np.abs(pop.bias_mant), initial=0)) << pop.bias_exp
            # per-neuron decays: the slowest decay bounds every neuron
            cu, cv = (4095 - int(np.min(pop.du))) / 4096, (4096 - int(np.min(pop.dv))) / 4096
            steps = self.g.num_steps
            if steps is None:
                if np.min(pop.dv) == 0:
                    raise _error(pop.node, node.op, "SSM state without decay (dv = 0) in a graph without num_steps: "
                                                    "its membrane bound grows without limit, so it could fire")
                u_b = u_in / (1 - cu)
                v_b = (u_b + bias) / (1 - cv)
            else:
                u_b = v_b = 0.0
                for _ in range(steps):
                    u_b = u_b * cu + u_in
                    v_b = v_b * cv + u_b + bias
            limit = pop.vth << self.prof.vth_shift
            if v_b > limit or u_b >= 2 ** (self.prof.u_bits - 1):
                raise _error(pop.node, node.op, f"SSM state (a LIF without reset read through its membrane): its "
                                                f"integer membrane can reach {v_b:.0f} (current {u_b:.0f}), beyond its "
                                                f"threshold {limit} (or u's 24-bit range), so Lava would fire and reset "
                                                "it; give it a decay or fewer steps, or read spikes instead")

    # readouts ----------------------------------------------------------------------------------
    def readouts(self) -> tuple[list[Readout], list[OutputSpec]]:
        readouts: list[Readout] = []
        outputs: list[OutputSpec] = []
        for out in self.g.outputs():
            (ref,) = out.inputs
            if ref.delay:
                raise _error(out.name, out.op, "reads a delayed edge; outputs show the current step")
            sig = self.signal(ref)
            if isinstance(sig, _Sum):
                raise _error(out.name, out.op, f"shows '{ref.node}', a synapse value; Lava observes neuron "
                                               "populations only (spikes, v, i)")
            if sig.pop.kind == "source":
                raise _error(out.name, out.op, f"shows the input '{sig.pop.node}'; read it from your own data")
            port = "spikes" if isinstance(sig, _Spikes) else sig.port
            rname = self.names.make("out", out.name)
            readouts.append(Readout(rname, sig.pop.key, port, np.asarray(sig.idx, np.int64)))
            outputs.append(OutputSpec(out.name, rname, out.op.decoding, out.op.layout, out.op.index))
        for pop in self.pops.values():
            if pop.kind not in ("source", "relay"):
                for port in ("spikes", "v", "i"):
                    readouts.append(Readout(self.names.make("probe", f"{pop.node}_{port}"), pop.key, port, pop.index))
        return readouts, outputs


@SIGNALS.register(ops.Input)
def _sig_input(lw: _Lowering, node, port: str) -> Signal:
    pop = lw.pops[node.name]
    return _Spikes(pop, pop.index)


@SIGNALS.register(ops.LIF)
def _sig_neuron(lw: _Lowering, node, port: str) -> Signal:
    pop = lw.pops[node.name]
    return _Spikes(pop, pop.index) if port == "spikes" else _State(pop, port, pop.index)


@SIGNALS.register(ops.Reshape)
def _sig_reshape(lw: _Lowering, node, port: str) -> Signal:
    shape = node.shape
    return _reindex(lw.signal(node.inputs[0]), lambda a: a.reshape(shape))


@SIGNALS.register(ops.Permute)
def _sig_permute(lw: _Lowering, node, port: str) -> Signal:
    return _reindex(lw.signal(node.inputs[0]), lambda a: a.transpose(node.op.dims))


@SIGNALS.register(ops.Add)
def _sig_add(lw: _Lowering, node, port: str) -> Signal:
    terms: list[_Term] = []
    for r in node.inputs:
        terms += lw._terms(lw.signal(r), node.name, node.op)
    return _Sum(terms)


@SIGNALS.register(ops.Dense, ops.Conv2d, ops.SumPool2d)
def _sig_synapse(lw: _Lowering, node, port: str) -> Signal:
    src = lw.signal(node.inputs[0])
    if not isinstance(src, _Spikes):
        what = "a neuron's membrane" if isinstance(src, _State) else "the output of another synapse op"
        raise _error(node.name, node.op, f"reads {what} ('{node.inputs[0].node}'); Lava synapses read spikes of a "
                                         "population (Input or LIF): put a neuron between two synapse ops")
    return _Sum([lw._weighted(node.name, node.op, src, node.shape)])


@SIGNALS.register(ops.MaxPool2d)
def _sig_maxpool(lw: _Lowering, node, port: str) -> Signal:
    """A max of one convolution's currents: the reading neuron (an ``NpucNeuron``) takes the maximum
    over each window of its ``a_in``, so the Conv writes its full output map."""
    src = lw.signal(node.inputs[0])
    if not lw.custom:
        raise _error(node.name, node.op, _UNSUPPORTED["MaxPool2d"])
    if not (isinstance(src, _Sum) and len(src.terms) == 1 and src.terms[0].kind == "conv"
            and np.array_equal(src.terms[0].out_idx.ravel(), np.arange(src.terms[0].out_idx.size))):
        raise _error(node.name, node.op, "max pooling on Loihi 2 reads the currents of one Conv2d directly "
                                         "(the legalize pass keeps only that form)")
    return _Sum([replace(src.terms[0], maxpool=node.name)])


@SIGNALS.register(ops.SpikeAttention)
def _sig_attention(lw: _Lowering, node, port: str) -> Signal:
    """Coincidence attention: a synapse-like term read by npuc's ``NpucAttention`` process (Q, K, V
    gathered from the populations' spikes; its output reaches the neuron through Reshape/Permute/Add)."""
    if not lw.custom:
        raise _error(node.name, node.op, "coincidence attention has no lava-nc process; stock_only keeps stock "
                                         "processes (without it npuc emits its custom NpucAttention process)")
    if node.op.q is None:
        raise _error(node.name, node.op, "no integer parameters (q): run the quantize pass for loihi2")
    ins = []
    for role, r in zip("QKV", node.inputs):
        sig = lw.signal(r)
        if not isinstance(sig, _Spikes) or sig.pop.graded:
            raise _error(node.name, node.op, f"its {role} input '{r.node}' must be the binary spikes of a population "
                                             "(a binary LIF or a spike-encoded input)")
        if sig.delay:
            raise _error(node.name, node.op, f"its {role} input '{r.node}' arrives over a delayed edge; NpucAttention "
                                             "reads the current step's spikes only")
        ins.append(sig)
    out_idx = np.arange(int(np.prod(node.shape))).reshape(node.shape)
    return _Sum([_Term(node.name, "attention", ins[0], out_idx, 0, op=node.op, inputs=ins)])


def _conv_param_overflow(conv: dict) -> bool:
    """Whether a Conv keyword argument exceeds what lava-nc's fixed_pt Conv holds (int8 Vars)."""
    return any(int(np.max(v)) > CONV_PARAM_MAX for k, v in conv.items() if k != "input_shape")


def _conv_pairs(op, in_shape, out_shape, pool: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero synapses of a Conv2d (integer weights) or SumPool2d: ``(output, input, weight)`` with
    logical (C, H, W) flat indices, as the integer engine computes it (cross-correlation)."""
    c_in, h, w = in_shape
    c_out, ho, wo = out_shape
    if pool:
        kh, kw = op.kernel
        weight = np.ones((c_in, 1, kh, kw), np.int64)
        stride, padding, dilation, groups = op.stride, op.padding, (1, 1), c_in
    else:
        weight = np.asarray(op.q.weight, np.int64)
        stride, padding, dilation, groups = op.stride, op.padding, op.dilation, op.groups
    cg, per_group = weight.shape[1], c_out // groups
    o, i, j = np.meshgrid(np.arange(c_out), np.arange(ho), np.arange(wo), indexing="ij")
    rows, cols, vals = [], [], []
    for u in range(weight.shape[2]):
        for v in range(weight.shape[3]):
            r = stride[0] * i + dilation[0] * u - padding[0]
            q = stride[1] * j + dilation[1] * v - padding[1]
            ok = (r >= 0) & (r < h) & (q >= 0) & (q < w)
            for k in range(cg):
                wk = weight[o, k, u, v]
                m = ok & (wk != 0)
                ch = (o // per_group) * cg + k
                rows.append(((o * ho + i) * wo + j)[m])
                cols.append(((ch * h + r) * w + q)[m])
                vals.append(wk[m])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _graded_parts(w: np.ndarray, src: Population, logical: np.ndarray) -> list[np.ndarray]:
    """A relay block's weights cut into consecutive runs of sources whose partial sums fit Loihi 2's
    graded spikes (|sum| < 2^23 at the source's largest payload: multi-level spikes can carry a lot),
    each run its own relays. One part when the block fits (the axon-sized blocks of map-cores)."""
    limit, top = 2 ** (MAX_GRADED_BITS - 1), _max_abs_input(src)
    if int(np.abs(w).sum(1).max(initial=0)) * top < limit:
        return [w]
    cols = np.flatnonzero(np.any(w, axis=0))
    cols = cols[np.argsort(logical[cols], kind="stable")]
    parts, start, acc = [], 0, np.zeros(w.shape[0], np.int64)
    for k, c in enumerate(cols):
        col = np.abs(w[:, c])
        if int((acc + col).max()) * top >= limit and k > start:
            parts.append(cols[start:k])
            start, acc = k, np.zeros_like(acc)
        acc += col
    parts.append(cols[start:])
    out = []
    for part in parts:  # a single source beyond the limit stays beyond it: the caller's check refuses it
        m = np.zeros(w.shape[1], bool)
        m[part] = True
        out.append(np.where(m[None, :], w, 0))
    return out


def _max_abs_input(src: Population) -> int:
    if src.kind == "source":
        return 2 ** (src.message_bits - 1) if src.graded else 1
    return src.max_payload


_UNSUPPORTED = {
    "MaxPool2d": "max pooling has no Loihi 2 synapse; use SumPool2d (or AvgPool2d folded into the next layer)",
    "AvgPool2d": "average pooling needs a multiply-shift Lava's synapses do not have; use SumPool2d and fold "
                 "the 1/k^2 into the next weights",
    "Scale": "a multiply-shift between layers has no Lava synapse; fold the scale into the weights",
    "BatchNorm": "run the fold-batchnorm pass first",
    "Conv1d": "Lava's Conv is 2-d only; express it as a Conv2d with a height of 1",
    "Output": "an output cannot feed other nodes",
}


def lava_weight_bits(w: np.ndarray, node: str, op: object) -> int:
    """The smallest ``num_weight_bits`` for which Lava keeps ``w`` exactly:
    ``truncate_weights(clip_weights(w, sign_mode, 8), sign_mode, nwb) == w``.

    Raises:
        LavaMappingError: no such width (weights off Lava's grid), naming a weight Lava would change.
    """
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    w = np.asarray(w, np.int64)
    sm = determine_sign_mode(w)
    for nwb in range(1, 9):
        kept = truncate_weights(clip_weights(w, sm, num_bits=8), sm, nwb)
        if np.array_equal(np.asarray(kept, np.int64), w):
            return nwb
    kept = np.asarray(truncate_weights(clip_weights(w, sm, num_bits=8), sm, 8), np.int64)
    bad = tuple(int(i) for i in np.argwhere(kept != w)[0])
    mode = sm.name.lower()
    raise _error(node, op, f"weight {int(w[bad])} at {list(bad)} would become {int(kept[bad])} in Lava "
                           f"({mode} sign mode: " + ("[-256, 255] with the LSB dropped" if mode == "mixed" else
                                                     "8-bit magnitudes") + "); the quantize pass must put weights "
                           "on Lava's grid (NumericProfile.weight_lsb)")


def check_profile(graph: Graph) -> None:
    """Refuse graphs whose integer semantics are not Lava's fixed_pt arithmetic."""
    prof = graph.profile
    if prof is None:
        raise LavaMappingError(f"graph '{graph.name}' is not quantized (no numeric profile): compile it for "
                               "--target loihi2 first")
    bad = [f"{k}={getattr(prof, k)!r} (Lava: {v!r})" for k, v in LAVA_PROFILE.items() if getattr(prof, k) != v]
    if bad:
        raise LavaMappingError(f"graph '{graph.name}' was quantized for profile '{prof.name}', whose integer "
                               f"semantics differ from Lava fixed_pt: {', '.join(bad)}")


def lower(graph: Graph, custom: bool = True) -> NetworkSpec:
    """Lower a quantized graph (profile ``loihi2``) to the Lava object model.

    ``custom``: neurons no stock Lava process computes exactly become npuc's ``NpucNeuron``
    process (False: refuse them, as the target option ``stock_only`` asks).

    Raises:
        LavaMappingError: naming the first node, op or parameter without an exact Lava mapping.
    """
    check_profile(graph)
    graph.verify()
    lw = _Lowering(graph, custom)
    lw.populations()
    conns = lw.connections()
    lw.lags(conns)
    lw.ssm_states(conns)
    readouts, outputs = lw.readouts()
    pops = list(lw.pops.values())
    inputs = []
    for node in graph.inputs():
        op = node.op
        pop = lw.pops[node.name]
        enc = {"kind": op.encoding.kind, "bits": op.encoding.bits, "seed": op.encoding.seed}
        q = None if op.q is None else {"frac_bits": op.q.frac_bits, "bits": op.q.bits}
        inputs.append(InputSpec(node.name, pop.key, tuple(op.shape), op.layout, op.index, enc, q))
    _check_connected(graph, pops, conns)
    return NetworkSpec(graph.name, module_ident(graph.name), graph.num_steps, pops, conns, inputs, outputs,
                       readouts)


def _check_connected(graph: Graph, pops: list[Population], conns: list[Connection]) -> None:
    """Lava's ``run()`` compiles only the processes connected to the one it is called on."""
    parent = {p.key: p.key for p in pops}

    def find(k: str) -> str:
        while parent[k] != k:
            k = parent[k]
        return k

    for c in conns:
        parent[find(c.src)] = find(c.dst)
        for k, _ in (c.attention or {}).get("inputs", [])[1:]:
            parent[find(k)] = find(c.dst)
    roots = {find(p.key) for p in pops}
    if len(roots) > 1:
        groups = sorted(sorted(p.node for p in pops if find(p.key) == r) for r in roots)
        raise LavaMappingError(f"graph '{graph.name}' falls apart into {len(groups)} unconnected networks {groups}; "
                               "Lava runs one connected network: compile them separately")


__all__ = ["lower", "lava_weight_bits", "check_profile", "lava_shape", "lava_index", "module_ident"]
