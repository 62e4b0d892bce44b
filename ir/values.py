"""Typed values nested inside ops: input encodings and integer (quantized) parameters.

They are frozen dataclasses registered in `VALUE_TYPES` so that serialization
can rebuild them from a type tag, exactly like ops.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .ops.base import (
    COMPARES,
    RESET_TIMINGS,
    RESETS,
    SPIKES,
    as_array,
    check_choice,
    check_int,
    freeze,
)

VALUE_TYPES: dict[str, type] = {}
T = TypeVar("T")


def value_type(cls: type[T]) -> type[T]:
    """Register a frozen dataclass as a serializable IR value."""
    VALUE_TYPES[cls.__name__] = cls
    return cls


def _summary(obj: Any) -> str:
    parts = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            if v.size == 1:
                parts.append(f"{f.name}={v.reshape(-1)[0]}")
            else:
                parts.append(f"{f.name}={v.dtype}{list(v.shape)}[{v.min()}..{v.max()}]")
        elif v is not None and v != f.default:
            parts.append(f"{f.name}={v}")
    return f"{type(obj).__name__}(" + ", ".join(parts) + ")"


# -----------------------------------------------------------------------------
# Input encodings (paper section IV-A)
# -----------------------------------------------------------------------------

ENCODINGS = ("current", "spikes", "rate", "bernoulli", "timecode", "latency")


@value_type
@dataclass(frozen=True)
class Encoding:
    """How an `Input` turns the user's tensor into per-step values.

    With ``x`` the user's value for one element and ``T`` the number of steps:

    * ``current``: ``s_t = x`` (a real-valued current, repeated every step when
      the input is static, or taken per step from a ``[T, ...]`` sequence).
    * ``spikes``: ``s_t = x_t`` for a spike train given per step (values are
      used as they are; binary or graded).
    * ``rate`` (unary): ``k = floor(clip(x, 0, 1) * T + 1/2)``; ``s_t = 1`` for
      ``t < k`` else 0 (the first k of T steps).
    * ``bernoulli``: ``s_t = 1[r_t <= x_q]`` where ``x_q = round(clip(x,0,1) *
      (2^w - 1))`` and ``r_t`` is the LFSR stream of width ``w = bits``
      (see `npuc.sim.lfsr`), i.i.d.-like with ``P(s_t = 1) = x_q / (2^w - 1)``.
      The stream advances once per element per step in row-major order and
      restarts from ``seed`` for every sample.
    * ``timecode`` (positional): ``x_q = round(clip(x, 0, 1) * (2^T - 1))``;
      ``s_t`` is bit ``T-1-t`` of ``x_q`` (MSB first).
    * ``latency`` (first to spike): one spike at
      ``t* = round((1 - clip(x, 0, 1)) * (T - 1))`` (half away from zero).
    """

    kind: str = "current"
    bits: int = 16  # LFSR width for bernoulli
    seed: int = 1

    def __post_init__(self) -> None:
        check_choice(self.kind, "encoding.kind", ENCODINGS)
        check_int(self.bits, "encoding.bits", 3, 32)
        check_int(self.seed, "encoding.seed", 1, 2**self.bits - 1)

    def summary(self) -> str:
        return self.kind if self.kind != "bernoulli" else f"bernoulli(w={self.bits},seed={self.seed})"


# -----------------------------------------------------------------------------
# Integer parameters attached by the `quantize` pass (field ``q`` of an op)
# -----------------------------------------------------------------------------


@value_type
@dataclass(frozen=True, eq=False)
class QInput:
    """Integer form of an input.

    For ``current`` inputs the integer current is
    ``x_int = clip(round_half_away(x * 2^frac_bits), -2^(bits-1), 2^(bits-1)-1)``.
    Spike-like encodings ignore ``frac_bits`` and emit 0/1 (or the integer
    payload of graded spikes).
    """

    frac_bits: int = 0
    bits: int = 16

    def __post_init__(self) -> None:
        check_int(self.frac_bits, "q.frac_bits", -32, 32)
        check_int(self.bits, "q.bits", 1, 32)

    summary = _summary


@value_type
@dataclass(frozen=True, eq=False)
class QSynapse:
    """Integer form of a weighted synapse op (Dense, Conv1d, Conv2d).

    ``acc = sum_j weight[i, j] * x[j]`` (exact integer);
    ``y = acc << weight_exp`` if ``weight_exp >= 0`` else ``acc >> -weight_exp``
    (arithmetic shift = floor); then ``y += bias`` if a bias is present.
    """

    weight: np.ndarray
    weight_exp: int = 0
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        freeze(self, weight=as_array(self.weight, "q.weight", np.int64))
        if self.bias is not None:
            freeze(self, bias=as_array(self.bias, "q.bias", np.int64, ndim=1))
        check_int(self.weight_exp, "q.weight_exp", -32, 32)

    summary = _summary


@value_type
@dataclass(frozen=True, eq=False)
class QScale:
    """Integer multiply-shift: ``y = (x * mult) >> shift`` (floor)."""

    mult: np.ndarray
    shift: int = 0

    def __post_init__(self) -> None:
        freeze(self, mult=as_array(self.mult, "q.mult", np.int64))
        check_int(self.shift, "q.shift", 0, 62)

    summary = _summary


@value_type
@dataclass(frozen=True, eq=False)
class QLIF:
    """Integer parameters of a LIF neuron under a `NumericProfile`.

    With ``D = 2^decay_bits`` and the profile's offsets, rounding ``R`` and
    overflow handling ``OVF`` (see `NumericProfile`), per step::

        u_t = OVF_u( W( R(u_{t-1} * (D - (du + du_offset)) / D) + (a_t << act_shift) ) )
        v_t = OVF_v( W( R(v_{t-1} * (D - (dv + dv_offset)) / D) + u_t + (bias_mant << bias_exp) ) )
                 (u_{t-1} for u_t with the LIF's ``charge="previous"``)
        spike when v_t > vth << vth_shift   (or >=, or ternary / multi-level forms)

    ``a_t`` is the integer synaptic input (after the profile's ``act_bits``
    overflow handling); ``W`` wraps at the profile's ``arith_bits``. The membrane overflow ``OVF_v`` applies once, after a
    delayed subtractive reset. Reset modes are those of the float `LIF` op;
    thresholds are ``vth << vth_shift`` (and ``vth_lo << vth_shift``) while
    ``reset_value`` is already in membrane units.
    ``scale`` maps integer membrane units back to float units (for reports).

    ``du`` and ``dv`` are one integer for the population, or an int64 array (broadcastable to the
    neuron shape, values varying) when the decays differ per neuron (a learned per-neuron beta):
    each neuron then uses its own value in the same equations, quantized by the same rule
    (``dv = round(D (1 - alpha_n))``). Equal values are stored as one integer.
    """

    du: int | np.ndarray
    dv: int | np.ndarray
    vth: int
    bias_mant: np.ndarray
    bias_exp: int = 0
    vth_lo: int | None = None
    reset_value: int = 0
    v_min: np.ndarray | None = None
    v_init: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.v_min is not None:
            freeze(self, v_min=as_array(self.v_min, "q.v_min", np.int64))
        check_int(self.v_init, "q.v_init", -(2**40), 2**40)
        freeze(self, du=_decay_field(self.du, "q.du"), dv=_decay_field(self.dv, "q.dv"))
        check_int(self.vth, "q.vth", -(2**40), 2**40)
        if self.vth_lo is not None:
            check_int(self.vth_lo, "q.vth_lo", -(2**40), 2**40)
        check_int(self.reset_value, "q.reset_value", -(2**40), 2**40)
        check_int(self.bias_exp, "q.bias_exp", -32, 32)
        freeze(self, bias_mant=as_array(self.bias_mant, "q.bias_mant", np.int64))

    summary = _summary

    @property
    def per_neuron_decay(self) -> bool:
        """Whether ``du`` or ``dv`` differs between neurons (arrays; see the class docstring)."""
        return isinstance(self.du, np.ndarray) or isinstance(self.dv, np.ndarray)


def _decay_field(value: Any, name: str) -> int | np.ndarray:
    """A decay integer: one int, or an int64 array when its values differ (per-neuron decays)."""
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = as_array(value, name, np.int64)
        if arr.size == 0:
            raise ValueError(f"field '{name}': empty decay array")
        if np.all(arr == arr.reshape(-1)[0]):
            value = arr.reshape(-1)[0]
        else:
            if arr.min() < 0 or arr.max() > 2**20:
                raise ValueError(f"field '{name}': values {arr.min()}..{arr.max()} outside [0, {2**20}]")
            return arr
    return check_int(value, name, 0, 2**20)


@value_type
@dataclass(frozen=True, eq=False)
class QAttention:
    """Integer form of `SpikeAttention`: ``a = a_int / 2^a_frac``;
    ``Y_int = ((Q K^T 2^a_frac + a_int (1-Q)(1-K)^T) V * mult) >> shift`` (floor)."""

    a_int: int
    a_frac: int
    mult: int
    shift: int

    def __post_init__(self) -> None:
        check_int(self.a_int, "q.a_int", 0, 2**31)
        check_int(self.a_frac, "q.a_frac", 0, 31)
        check_int(self.mult, "q.mult", -(2**31), 2**31)
        check_int(self.shift, "q.shift", 0, 62)

    summary = _summary


@value_type
@dataclass(frozen=True, eq=False)
class QLinearAttention:
    """Integer form of `LinearAttention` (state rules = the profile's membrane rules)::

        S = OVF_v( R(S * (2^decay_bits - da) / 2^decay_bits) + b_int * v k^T )
        y = (S q * mult) >> shift
    """

    da: np.ndarray
    b_int: int
    mult: int
    shift: int

    def __post_init__(self) -> None:
        freeze(self, da=as_array(self.da, "q.da", np.int64))
        check_int(self.b_int, "q.b_int", -(2**31), 2**31)
        check_int(self.mult, "q.mult", -(2**31), 2**31)
        check_int(self.shift, "q.shift", 0, 62)

    summary = _summary


# -----------------------------------------------------------------------------
# Numeric profiles: integer semantics of a target
# -----------------------------------------------------------------------------

OVERFLOW = ("wrap", "wrap_sym", "saturate", "saturate_sym", "none")
PROFILE_FEATURES = {"spike_types": SPIKES, "reset_modes": RESETS, "reset_timings": RESET_TIMINGS,
                    "compares": COMPARES}
ROUNDING = ("trunc0", "floor", "round_half_up")


@value_type
@dataclass(frozen=True)
class NumericProfile:
    """Integer semantics of a hardware target. Profiles are data (target JSON files).

    Fields (widths in bits, two's complement unless stated):

    * ``weight_bits``: weight mantissa width (incl. sign for signed weights).
    * ``weight_scheme``: ``signed`` (plain two's complement) or ``loihi``
      (Lava's sign-mode clipping: mixed-sign matrices clip to [-256, 255] and
      lose ``8 - weight_bits + 1`` LSBs; excitatory/inhibitory to [0, 255] /
      [-255, 0] and lose ``8 - weight_bits``).
    * ``weight_exp_min`` / ``weight_exp_max``: range of the per-layer shift.
    * ``act_bits`` / ``act_overflow``: width of the synaptic input a neuron
      receives (``act_bits = 0`` = unbounded).
    * ``act_shift``: ``a << act_shift`` enters the current state (Loihi: 6).
    * ``arith_bits``: width of the adders inside the neuron (0 = unbounded);
      ``a << act_shift``, the u sum and the v sum wrap (two's complement) at
      this width before the state overflow rules apply (Lava computes in int32).
    * ``conv_acc_bits`` / ``conv_acc_overflow``: what a convolution's output
      does on overflow (Lava: wraps at 24 bits); ``conv_weight_exp``: whether a
      convolution honours ``weight_exp`` (Lava's Conv ignores it).
    * ``decay_bits``: decays are integers out of ``2^decay_bits``.
    * ``du_offset`` / ``dv_offset``: added to du/dv before decaying (Loihi u: 1).
    * ``decay_rounding``: ``trunc0`` (toward zero), ``floor`` or
      ``round_half_up`` for ``R(x * m / D)``.
    * ``u_bits``/``u_overflow``, ``v_bits``/``v_overflow``: state widths and what
      happens on overflow: ``wrap`` (two's complement), ``wrap_sym`` (one
      correction by ``2^bits`` into ``(-2^(bits-1), 2^(bits-1)]``, as Lava does),
      ``saturate`` (to ``[-2^(bits-1), 2^(bits-1)-1]``), ``saturate_sym`` (to
      ``[-(2^(bits-1)-1), 2^(bits-1)-1]``, as Lava does), ``none``.
    * ``vth_shift`` / ``vth_bits``: thresholds are ``vth << vth_shift`` with an
      unsigned ``vth_bits``-bit mantissa.
    * ``bias_mant_bits`` / ``bias_exp_min`` / ``bias_exp_max``: bias = mantissa << exp.
    * ``spike_types``, ``reset_modes``, ``reset_timings``, ``compares``: the
      neuron features the target implements exactly (checked by legalization).
    * ``synapse_delay``: time steps a synapse op adds on the target (Lava: 1).
      The golden engines compute in logical time; backends compensate.
    """

    name: str
    weight_bits: int = 8
    weight_scheme: str = "signed"
    weight_exp_min: int = -16
    weight_exp_max: int = 16
    act_bits: int = 0
    act_overflow: str = "none"
    act_shift: int = 0
    arith_bits: int = 0
    conv_acc_bits: int = 0
    conv_acc_overflow: str = "none"
    conv_weight_exp: bool = True
    decay_bits: int = 12
    du_offset: int = 0
    dv_offset: int = 0
    decay_rounding: str = "trunc0"
    u_bits: int = 16
    u_overflow: str = "saturate"
    v_bits: int = 16
    v_overflow: str = "saturate"
    vth_shift: int = 0
    vth_bits: int = 16
    bias_mant_bits: int = 16
    bias_exp_min: int = 0
    bias_exp_max: int = 0
    input_bits: int = 8
    spike_types: tuple[str, ...] = ("binary", "ternary", "multilevel", "bernoulli")
    reset_modes: tuple[str, ...] = ("subtract", "value", "none")
    reset_timings: tuple[str, ...] = ("same", "delayed")
    compares: tuple[str, ...] = ("gt", "ge")
    cuba: bool = True
    synapse_delay: int = 0
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_choice(self.weight_scheme, "weight_scheme", ("signed", "loihi"))
        check_int(self.weight_bits, "weight_bits", 1, 32)
        check_choice(self.act_overflow, "act_overflow", OVERFLOW)
        check_choice(self.u_overflow, "u_overflow", OVERFLOW)
        check_choice(self.v_overflow, "v_overflow", OVERFLOW)
        check_choice(self.decay_rounding, "decay_rounding", ROUNDING)
        for name in ("u_bits", "v_bits", "vth_bits", "bias_mant_bits", "input_bits"):
            check_int(getattr(self, name), name, 2, 48)
        check_int(self.act_bits, "act_bits", 0, 48)
        check_int(self.arith_bits, "arith_bits", 0, 64)
        check_int(self.conv_acc_bits, "conv_acc_bits", 0, 64)
        check_choice(self.conv_acc_overflow, "conv_acc_overflow", OVERFLOW)
        check_int(self.decay_bits, "decay_bits", 1, 24)
        if self.weight_exp_min > self.weight_exp_max:
            raise ValueError("weight_exp_min is above weight_exp_max")
        if self.bias_exp_min > self.bias_exp_max:
            raise ValueError("bias_exp_min is above bias_exp_max")
        for name, choices in PROFILE_FEATURES.items():
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value)
            for v in value:
                check_choice(v, name, choices)
            freeze(self, **{name: value})

    @property
    def decay_unity(self) -> int:
        return 1 << self.decay_bits

    def weight_range(self, sign_mode: str = "mixed") -> tuple[int, int]:
        """Representable integer weights (before the exponent) for a sign mode."""
        if self.weight_scheme == "loihi":
            # Lava clips to 8-bit magnitudes, then drops LSBs down to weight_bits.
            return {"mixed": (-256, 255), "exc": (0, 255), "inh": (-255, 0)}[sign_mode]
        hi = 2 ** (self.weight_bits - 1) - 1
        return (-hi - 1, hi)

    def weight_lsb(self, sign_mode: str = "mixed") -> int:
        """Granularity of representable weights (Lava drops LSBs)."""
        if self.weight_scheme == "loihi":
            return 1 << (8 - self.weight_bits + (1 if sign_mode == "mixed" else 0))
        return 1

    def summary(self) -> str:
        return (
            f"{self.name}: w{self.weight_bits}({self.weight_scheme}) u{self.u_bits}/{self.u_overflow} "
            f"v{self.v_bits}/{self.v_overflow} decay/{1 << self.decay_bits} vth<<{self.vth_shift}"
        )
