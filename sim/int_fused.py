"""Fused integer neuron steps: a LIF population's whole time loop (or one step of it inside a
recurrent group) in one compiled call (numba), instead of ~15 tensor passes per step.

Same arithmetic in the same order as `int_kernels.LIFInt.step` (the plain step, the
specification the in-place torch step also follows), per neuron and per step, in int64: input
register, u decay and add, the u adder's wrap and u's register, a delayed reset, v decay and add,
bias, the v adder's wrap, delayed subtractions, v's register, spikes, same-step resets, ``v_min``.
No bound proofs: each block of neurons and step first runs with every register rule only
checked (the common case: no rule would change a value), and where one would, runs again from the
same state with every rule applied, counting each changed value under the counter the torch paths
use. Spike kinds covered: binary, ternary and multi-level; Bernoulli spikes (LFSR draws) keep the
torch path. Single-threaded (numba's own threads are not used; the torch thread setting does not
apply).

Compiled functions are cached on disk (``cache=True``): in ``NUMBA_CACHE_DIR`` if set, else next
to this file when its ``__pycache__`` is writable, else a per-user directory (`_cache_dir`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import numpy as np
import torch


def _writable(path: str) -> bool:
    """Whether files can be created in ``path`` (created if missing)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _cache_dir(here: str, writable=_writable) -> str | None:
    """Where numba should cache the compiled kernels: None (numba's own choice: this package's
    ``__pycache__``) when that is writable or ``NUMBA_CACHE_DIR`` is set, else the first writable
    per-user directory. A read-only install then still compiles once per user, not per process."""
    if os.environ.get("NUMBA_CACHE_DIR") or writable(os.path.join(here, "__pycache__")):
        return None
    candidates = [os.path.join(os.path.expanduser("~"), ".cache", "npuc", "numba"),
                  os.path.join(tempfile.gettempdir(), f"npuc-numba-{os.getuid() if hasattr(os, 'getuid') else 0}")]
    return next((c for c in candidates if writable(c)), None)


_FALLBACK = _cache_dir(os.path.dirname(os.path.abspath(__file__)))

import numba  # noqa: E402  (after the cache directory is known: numba reads it when a kernel is defined)

if _FALLBACK is not None:
    numba.config.CACHE_DIR = _FALLBACK

SPIKE = {"binary": 0, "ternary": 1, "multilevel": 2}
COUNTERS = ("input_overflow", "u_adder_wrap", "u_overflow", "v_adder_wrap", "v_overflow")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_BLOCK = 256  # neurons stepped together: their state stays in L1 between steps
# positions in the parameter vector `lif_steps` reads
(P_ACT_SHIFT, P_DECAY_BITS, P_ROUND_NEG, P_ROUND_ADD, P_SPIKE, P_THR, P_THR_LO, P_LEVEL_MAX, P_VTH,
 P_VTH_LO, P_RESET_VALUE, P_DELAYED_VALUE, P_DELAYED_SUB, P_CHARGE_VALUE, P_SAME_SUB, P_SAME_VALUE, P_PREVIOUS,
 P_NEURONS, P_SIMPLE, P_LEN) = range(20)


def register(bits: int, mode: str) -> tuple[int, ...]:
    """`int_kernels.overflow`'s rule for `_ovf`: ``(half, lo, hi, wrap, once, clamp, keep_lo,
    keep_hi)``: masks (all ones or zero) selecting two's complement wrapping, one correction by
    ``2^bits`` (``wrap_sym``) or clamping to ``[lo, hi]`` (saturation; no register: the whole int64
    range), and the range of values the rule leaves unchanged."""
    if mode == "none" or bits == 0 or bits >= 64:
        return 0, _I64_MIN, _I64_MAX, 0, 0, -1, _I64_MIN, _I64_MAX
    half = 1 << (bits - 1)
    if mode == "wrap":
        return half, -half, half - 1, -1, 0, 0, -half, half - 1
    if mode == "wrap_sym":
        return half, -half, half - 1, 0, -1, 0, 1 - half, half
    lo = -half if mode == "saturate" else 1 - half
    return half, lo, half - 1, 0, 0, -1, lo, half - 1


@numba.njit(inline="always")
def _ovf(x, r):
    """One value through register rule ``r`` (a row of `register` values): every form computed and
    one selected by masks, without branches, so that the step loop vectorizes."""
    half = r[0]
    wrapped = ((x + half) & ((half << 1) - 1)) - half
    once = x - ((half << 1) & -np.int64(x > half)) + ((half << 1) & -np.int64(x <= -half))
    clamped = min(max(x, r[1]), r[2])
    return (wrapped & r[3]) | (once & r[4]) | (clamped & r[5])


@numba.njit(inline="always")
def _reg(x, r, fast):
    """``(value, flag)``: exact (``fast`` False): the value through rule ``r`` and whether it
    changed; ``fast``: the value as it is and whether the rule would change it."""
    if fast:
        return x, np.int64(x < r[6]) | np.int64(x > r[7])
    y = _ovf(x, r)
    return y, np.int64(y != x)


@numba.njit(inline="always")
def _rule(regs, k):
    return (regs[k, 0], regs[k, 1], regs[k, 2], regs[k, 3], regs[k, 4], regs[k, 5], regs[k, 6], regs[k, 7])


@numba.njit(inline="always")
def _decay(x, mult, bits, round_neg, round_add):
    """`int_kernels.decay` of one value: ``R(x * mult / 2^bits)``; the rounding as the amounts added
    to negative products (toward zero: ``2^bits - 1``) and to all (half up: ``2^(bits-1)``)
    before the floor shift (a multiplier of 0 or ``2^bits`` gives 0 or ``x`` under every rounding)."""
    p = x * mult
    return (p + ((p >> 63) & round_neg) + round_add) >> bits


@numba.njit(inline="always")
def _amount(s, vth, vth_lo):
    """What a reset by subtraction removes after spikes ``s`` (a negative ternary spike: ``vth_lo``)."""
    return max(s, 0) * vth + (vth_lo & -np.int64(s < 0))


@numba.njit(inline="always")
def _floor_div(h, vth, vthf):
    """``floor(h / vth)`` for ``vth > 0`` and ``|h| < 2^52``: the float64 quotient (within 1 of it)
    corrected by one exact multiply-compare each way (vector instructions: integer division has
    none)."""
    q = np.int64(np.floor(np.float64(h) / vthf))
    q -= np.int64(q * vth > h)
    return q + np.int64((q + 1) * vth <= h)


@numba.njit(inline="always")
def _where(mask, a, b):
    """``a`` where the all-ones / zero ``mask`` is set, else ``b`` (a select without a branch)."""
    return b ^ ((a ^ b) & mask)


@numba.njit(cache=True, nogil=True)
def lif_steps(x, t0, state, out_s, out_v, out_u, du, dv, bias, vmin, p, regs, counts):
    """Steps ``t0 .. t0 + len(x) - 1`` of a LIF population, in place.

    ``x``: inputs ``[steps, M]`` (M = batch x neurons, exact integers of any numeric type);
    ``state``: ``[3, M]`` int64 u, v and the last spikes; ``out_s`` / ``out_v`` / ``out_u``:
    ``[T, M]`` rows written at ``t0 + k`` (``out_v`` / ``out_u`` may have no rows: not written);
    ``du``, ``dv``, ``bias``, ``vmin``: per-neuron int64 decay multipliers, shifted bias and lower
    bound (the int64 minimum where there is none), each the neurons of one or more whole samples;
    ``p``: the parameters (``P_*``); ``regs``: the
    input, u adder, u, v adder and v register rules (`register`); ``counts``: the `COUNTERS`,
    incremented by the number of values each rule changed."""
    steps, m = x.shape
    group = du.shape[0]  # the per-neuron arrays: whole samples' worth, at least a block's (`params`)
    ul, vl, sl = np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64)
    ul2, vl2, sl2 = np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64)
    scratch_v = np.empty(_BLOCK, np.int64)  # the v and u rows nobody reads
    scratch_u = np.empty(_BLOCK, np.int64)
    multi = p[P_SPIKE] == 2
    simple = p[P_SIMPLE] != 0 and out_v.shape[0] == 0 and out_u.shape[0] == 0
    for g0 in range(0, m, group):
        for j0 in range(0, min(group, m - g0), _BLOCK):
            n = min(_BLOCK, group - j0, m - g0 - j0)
            i0 = g0 + j0
            for j in range(n):
                ul[j], vl[j], sl[j] = state[0, i0 + j], state[1, i0 + j], state[2, i0 + j]
            for k in range(steps):
                t = t0 + k
                ov = out_v[t, i0:i0 + n] if out_v.shape[0] else scratch_v[:n]
                ou = out_u[t, i0:i0 + n] if out_u.shape[0] else scratch_u[:n]
                xk, os_ = x[k, i0:i0 + n], out_s[t, i0:i0 + n]
                dvk, duk, bk, mk = dv[j0:j0 + n], du[j0:j0 + n], bias[j0:j0 + n], vmin[j0:j0 + n]
                # first without the register rules, only checking that none would change a value
                # (the common case); else this step again from the same state, exactly
                if simple:  # copies of the loop, each without branches
                    c = _simple_check(xk, ul, vl, ul2, vl2, sl2, os_, duk, dvk, bk, p, regs)
                elif multi:
                    c = _block_step(xk, ul, vl, sl, ul2, vl2, sl2, os_, ov, ou, duk, dvk, bk, mk, p, regs, True, True)
                else:
                    c = _block_step(xk, ul, vl, sl, ul2, vl2, sl2, os_, ov, ou, duk, dvk, bk, mk, p, regs, False, True)
                if c[0] + c[1] + c[2] + c[3] + c[4] == 0:
                    ul, vl, sl, ul2, vl2, sl2 = ul2, vl2, sl2, ul, vl, sl
                    continue
                if multi:
                    c = _block_step(xk, ul, vl, sl, ul, vl, sl, os_, ov, ou, duk, dvk, bk, mk, p, regs, True, False)
                else:
                    c = _block_step(xk, ul, vl, sl, ul, vl, sl, os_, ov, ou, duk, dvk, bk, mk, p, regs, False, False)
                for r in range(5):
                    counts[r] += c[r]
            for j in range(n):
                state[0, i0 + j], state[1, i0 + j], state[2, i0 + j] = ul[j], vl[j], sl[j]


@numba.njit(inline="always")
def _block_step(x, ul, vl, sl, ul2, vl2, sl2, out, out_v, out_u, du, dv, bias, vmin, p, regs, multi, fast):
    """One step of ``len(x)`` neurons (`lif_steps`) from state ``ul, vl, sl`` into ``ul2, vl2, sl2``:
    the operations of `int_kernels.LIFInt.step` in its order, the reset modes as all-ones / zero
    masks (``multi``: multi-level spikes; ``fast``: see `_reg`). Returns the flags' counts."""
    shift, db, rneg, radd = p[P_ACT_SHIFT], p[P_DECAY_BITS], p[P_ROUND_NEG], p[P_ROUND_ADD]
    thr, thr_lo, level_max = p[P_THR], p[P_THR_LO], p[P_LEVEL_MAX]
    vth, vth_lo, rv = p[P_VTH], p[P_VTH_LO], p[P_RESET_VALUE]
    vthf = np.float64(vth)
    dval, dsub, cval, ssub, sval = (-p[P_DELAYED_VALUE], p[P_DELAYED_SUB], -p[P_CHARGE_VALUE], p[P_SAME_SUB],
                                    -p[P_SAME_VALUE])
    prev = -p[P_PREVIOUS]
    # the rules as tuples of scalars: loads from arrays inside the loop could alias its stores,
    # which keeps the loop from vectorizing
    r0, r1, r2, r3, r4 = (_rule(regs, 0), _rule(regs, 1), _rule(regs, 2), _rule(regs, 3), _rule(regs, 4))
    c0 = c1 = c2 = c3 = c4 = 0
    for j in range(x.shape[0]):
        a, f = _reg(np.int64(x[j]), r0, fast)
        c0 += f
        a = a << shift
        u0, v, s0 = ul[j], vl[j], sl[j]
        u, f = _reg(_decay(u0, du[j], db, rneg, radd) + a, r1, fast)
        c1 += f
        u, f = _reg(u, r2, fast)
        c2 += f
        fired0 = -np.int64(s0 != 0)
        v = _where(dval & fired0, rv, v)
        h, f = _reg(_decay(v, dv[j], db, rneg, radd) + _where(prev, u0, u) + bias[j], r3, fast)
        c3 += f
        h = _where(cval & fired0, rv, h - dsub * _amount(s0, vth, vth_lo))
        u = _where(cval & prev & fired0, 0, u)
        h, f = _reg(h, r4, fast)
        c4 += f
        if multi:  # floor(h / vth) within [0, levels - 1]
            s = min(max(_floor_div(h, vth, vthf), 0), level_max)
        else:  # binary (thr_lo: the int64 minimum) or ternary
            s = np.int64(h > thr) - np.int64(h < thr_lo)
        h = _where(sval & -np.int64(s != 0), rv, h - ssub * _amount(s, vth, vth_lo))
        h = max(h, vmin[j])
        ul2[j], vl2[j], sl2[j] = u, h, s
        out[j] = s
        out_v[j] = h
        out_u[j] = u
    return c0, c1, c2, c3, c4


@numba.njit(inline="always")
def _simple_check(x, ul, vl, ul2, vl2, sl2, out, du, dv, bias, p, regs):
    """`_block_step`'s checking pass (``fast``) for the neurons `params` marks ``P_SIMPLE`` (binary
    spikes, the current charge, no delayed reset, no ``v_min``) when no v or u rows are written:
    its operations without those that are then identities (the delayed resets' selects, the
    previous-charge select, the lower threshold, ``v_min``), about a third fewer per neuron. Returns
    the number of neurons whose values some register rule would change (in the first count)."""
    shift, db, rneg, radd = p[P_ACT_SHIFT], p[P_DECAY_BITS], p[P_ROUND_NEG], p[P_ROUND_ADD]
    thr, vth, rv, ssub, sval = p[P_THR], p[P_VTH], p[P_RESET_VALUE], p[P_SAME_SUB], -p[P_SAME_VALUE]
    r0, r1, r2, r3, r4 = (_rule(regs, 0), _rule(regs, 1), _rule(regs, 2), _rule(regs, 3), _rule(regs, 4))
    c = 0
    for j in range(x.shape[0]):
        a = np.int64(x[j])
        f = np.int64(a < r0[6]) | np.int64(a > r0[7])
        u = _decay(ul[j], du[j], db, rneg, radd) + (a << shift)
        f |= np.int64(u < r1[6]) | np.int64(u > r1[7]) | np.int64(u < r2[6]) | np.int64(u > r2[7])
        h = _decay(vl[j], dv[j], db, rneg, radd) + u + bias[j]
        f |= np.int64(h < r3[6]) | np.int64(h > r3[7]) | np.int64(h < r4[6]) | np.int64(h > r4[7])
        s = np.int64(h > thr)
        h = _where(sval & -s, rv, h - ssub * s * vth)
        ul2[j], vl2[j], sl2[j] = u, h, s
        out[j] = s
        c += f
    return c, 0, 0, 0, 0


# -- the engine's side: parameters, buffers, calls --------------------------------------------

def params(op, prof, shape: tuple[int, ...]):
    """The constants `lif_steps` reads for neuron ``op`` under ``prof`` (neurons of ``shape``):
    ``(p, regs, du, dv, bias, vmin)``, or None where the torch paths must run (Bernoulli spikes, a
    ternary neuron without its lower threshold, multi-level spikes with a threshold <= 0 or
    without a v register below 2^52)."""
    q = op.q
    vth = q.vth << prof.vth_shift
    vth_lo = None if q.vth_lo is None else q.vth_lo << prof.vth_shift
    if op.spike not in SPIKE or (op.spike == "ternary" and vth_lo is None):
        return None
    if op.spike == "multilevel" and not (vth > 0 and prof.v_overflow != "none" and 0 < prof.v_bits <= 52):
        return None  # `_floor_div` needs |h| < 2^52, which v's register then proves
    nn = int(np.prod(shape, dtype=np.int64))

    samples = max(1, _BLOCK // nn)  # small layers: blocks of several samples (per-neuron values repeated)

    def per_neuron(value) -> np.ndarray:
        return np.tile(np.broadcast_to(np.asarray(value, dtype=np.int64), shape).reshape(nn), samples)

    du = per_neuron(prof.decay_unity - (np.asarray(q.du, dtype=np.int64) + prof.du_offset))
    dv = per_neuron(prof.decay_unity - (np.asarray(q.dv, dtype=np.int64) + prof.dv_offset))
    mant = np.asarray(q.bias_mant, dtype=np.int64)
    bias = per_neuron(mant << q.bias_exp if q.bias_exp >= 0 else mant >> -q.bias_exp)
    vmin = per_neuron(_I64_MIN if q.v_min is None else q.v_min)
    regs = np.array([register(prof.act_bits, prof.act_overflow), register(prof.arith_bits, "wrap"),
                     register(prof.u_bits, prof.u_overflow), register(prof.arith_bits, "wrap"),
                     register(prof.v_bits, prof.v_overflow)], dtype=np.int64)
    ge, b = op.compare == "ge", prof.decay_bits
    p = np.zeros(P_LEN, dtype=np.int64)
    p[P_ACT_SHIFT], p[P_DECAY_BITS] = prof.act_shift, b
    p[P_ROUND_NEG] = (1 << b) - 1 if prof.decay_rounding == "trunc0" else 0
    p[P_ROUND_ADD] = 1 << (b - 1) if prof.decay_rounding == "round_half_up" else 0
    p[P_SPIKE] = SPIKE[op.spike]
    p[P_THR] = vth - 1 if ge else vth  # h >= vth is h > vth - 1
    p[P_THR_LO] = _I64_MIN if vth_lo is None else (vth_lo + 1 if ge else vth_lo)  # h <= lo is h < lo + 1
    p[P_LEVEL_MAX] = _I64_MAX if op.levels is None else op.levels - 1
    p[P_VTH], p[P_VTH_LO], p[P_RESET_VALUE] = vth, vth_lo or 0, q.reset_value
    delayed, same = op.reset_timing != "same", op.reset_timing == "same"
    p[P_DELAYED_VALUE] = op.reset_timing == "delayed" and op.reset == "value"
    p[P_DELAYED_SUB] = delayed and op.reset == "subtract"
    p[P_CHARGE_VALUE] = op.reset_timing == "delayed_charge" and op.reset == "value"
    p[P_SAME_SUB], p[P_SAME_VALUE] = same and op.reset == "subtract", same and op.reset == "value"
    p[P_PREVIOUS], p[P_NEURONS] = op.charge == "previous", nn
    p[P_SIMPLE] = (op.spike == "binary" and op.charge == "current" and not (p[P_DELAYED_VALUE] or p[P_DELAYED_SUB]
                                                                              or p[P_CHARGE_VALUE]) and q.v_min is None)
    return p, regs, du, dv, bias, vmin


class Population:
    """A run's fused state of a neuron layer: u, v and last spikes of ``batch`` samples, and
    the ``[T, B, ...]`` output rows (allocated at the first call, when the reader's needs are
    known). The engine reuses one for the next run of the same size (`reset`) where no row
    leaves the run."""

    COUNTERS = COUNTERS

    def __init__(self, consts, v_init: int, batch: int, shape: tuple[int, ...], steps: int) -> None:
        self.consts = consts
        self.shape = (batch, *shape)
        # channels-last neuron order ([C, H, W] layers fed channels-last inputs, as oneDNN's
        # convolutions write them): set by the first call, kept while the rows are
        self.nhwc = False
        self._plain_consts = consts
        self.m = batch * int(consts[0][P_NEURONS])
        self.state = np.zeros((3, self.m), dtype=np.int64)
        self.state[1] = v_init
        self.steps = steps
        self.rows: dict[str, torch.Tensor] = {}
        self.ports: tuple = ()
        self.flat: list[np.ndarray] = []
        self.counts = np.zeros(len(COUNTERS), dtype=np.int64)

    def reset(self, v_init: int) -> None:
        """The state of a new run (the rows are overwritten by it)."""
        self.state.fill(0)
        self.state[1] = v_init

    def _allocate(self, ports: tuple[str, ...], spike_dtype: torch.dtype) -> None:
        empty = np.zeros((0, 0), dtype=np.int64)
        flat = {}
        for port in ("spikes", "v", "i"):
            if port in ports:
                dt = spike_dtype if port == "spikes" else torch.int64
                if self.nhwc:  # [T, B, H, W, C] in memory, read as [T, B, C, H, W]
                    b, c, h, w = self.shape
                    mem = torch.empty((self.steps, b, h, w, c), dtype=dt)
                    self.rows[port] = mem.permute(0, 1, 4, 2, 3)
                else:
                    mem = self.rows[port] = torch.empty((self.steps, *self.shape), dtype=dt)
                flat[port] = mem.numpy().reshape(self.steps, self.m)
        self.flat = [flat.get(p, empty) for p in ("spikes", "v", "i")]

    def _channels_last(self, x: torch.Tensor) -> bool:
        """Whether ``x`` ([steps, B, C, H, W]) holds each sample's values channels-last (and not
        also in the plain order, as when C or H x W is 1)."""
        return (len(self.shape) == 4 and x.dim() == 5 and not x.is_contiguous()
                and x.permute(0, 1, 3, 4, 2).is_contiguous())

    def _nhwc_consts(self) -> tuple:
        """The per-neuron constants in channels-last order."""
        _, c, h, w = self.shape
        p, regs, *per = self.consts
        return (p, regs, *(a.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(-1).copy() for a in per))

    def run(self, x: torch.Tensor, t0: int, ports: tuple[str, ...], spike_dtype: torch.dtype) -> np.ndarray:
        """Steps ``t0 ..`` on inputs ``x`` (``[steps, B, ...]``); returns this call's counter increments."""
        if not self.rows or self.ports != (ports, spike_dtype):  # a reused population's may differ
            self.ports = ports, spike_dtype
            self.rows = {}
            nhwc = self._channels_last(x)
            if nhwc != self.nhwc and t0 == 0:  # the state's neuron order: chosen before its first step
                self.consts = self._nhwc_consts() if nhwc else self._plain_consts
                self.nhwc = nhwc
            self._allocate(ports, spike_dtype)
        if x.dtype not in (torch.int64, torch.float32):  # each input type is a compilation (~10-30 s cold)
            x = x.to(torch.int64)
        if self.nhwc:  # the neurons in the state's order: a view of a channels-last input
            x = x.permute(0, 1, 3, 4, 2)
        xn = x.contiguous().numpy().reshape(-1, self.m)
        p, regs, du, dv, bias, vmin = self.consts
        s, v, u = self.flat
        self.counts[:] = 0
        with _compile_notice((xn.dtype, s.dtype)):  # (dtypes: their names cost microseconds per call)
            lif_steps(xn, t0, self.state, s, v, u, du, dv, bias, vmin, p, regs, self.counts)
        return self.counts


NOTICE_AFTER_S = 2.0


def _notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

_seen: set[tuple[str, str]] = set()


class _compile_notice:
    """The first call of a compiled variant in a process: a line on stderr if it takes longer than
    `NOTICE_AFTER_S` (numba compiling it, once per machine; a disk-cache load stays silent)."""

    def __init__(self, variant: tuple[str, str]) -> None:
        self.timer = None
        if variant not in _seen:
            _seen.add(variant)
            name = variant[0].name if isinstance(variant[0], np.dtype) else variant[0]
            self.timer = threading.Timer(NOTICE_AFTER_S, _notify, (
                f"sim: compiling the fused neuron kernel for {name} inputs (numba, once per machine, about 10 s) ...",))
            self.timer.daemon = True

    def __enter__(self) -> None:
        if self.timer:
            self.timer.start()

    def __exit__(self, *exc) -> None:
        if self.timer:
            self.timer.cancel()
