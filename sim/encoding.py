"""Input encoders and output decoders (paper section IV-A), shared by both engines.

Spike encoders (rate, bernoulli, timecode, latency) are defined on the
quantized value ``x_q = floor(clip(x, 0, 1) * M + 1/2)`` with ``M = 2^bits - 1``
(computed in float64), so the float and integer engines and the RTL encoders
produce identical spike trains. See `npuc.ir.values.Encoding`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError  # noqa: F401  (re-exported)
from ..ir.ops import Input, Output
from ..ir.values import Encoding
from . import lfsr


def to_time_major(node_name: str, op: Input, x: np.ndarray | torch.Tensor, num_steps: int | None,
                  finite: bool = True) -> tuple[torch.Tensor, int]:
    """Check the user's array against the input node and return it as ``[T, B, ...]``
    (static inputs as ``[1, B, ...]``) along with ``T``. ``finite=False`` leaves the check for NaN
    and infinities to the caller (`check_finite`), whose own check of every value fails on them."""
    a = np.asarray(x) if not isinstance(x, torch.Tensor) else x
    if isinstance(a, np.ndarray) and a.dtype.kind not in "biuf":
        raise InputError(f"input '{node_name}' must be numeric, got dtype {a.dtype}")
    t = torch.as_tensor(a)
    if finite:
        check_finite(node_name, t)
    lead = {"B": 1, "TB": 2, "BT": 2}[op.layout]
    expected = ("B",) if op.layout == "B" else (("T", "B") if op.layout == "TB" else ("B", "T"))
    if t.dim() != lead + len(op.shape) or tuple(t.shape[lead:]) != tuple(op.shape):
        raise InputError(
            f"input '{node_name}' expects shape [{', '.join(expected)}, {', '.join(map(str, op.shape))}], "
            f"got {list(t.shape)}"
        )
    batch_axis = 1 if op.layout == "TB" else 0
    if t.shape[batch_axis] == 0:
        raise InputError(f"input '{node_name}' has no samples (shape {list(t.shape)})")
    if op.layout == "B":
        if num_steps is None:
            raise InputError(f"input '{node_name}' is static but the graph has no num_steps")
        return t.unsqueeze(0), num_steps
    if op.layout == "BT":
        t = t.transpose(0, 1)
    if num_steps is not None and t.shape[0] != num_steps:
        raise InputError(f"input '{node_name}' has {t.shape[0]} time steps, the graph was compiled for {num_steps}")
    return t, int(t.shape[0])


def check_finite(node_name: str, t: torch.Tensor) -> None:
    """Raise `InputError` naming the input when float ``t`` holds NaN or infinite values."""
    if t.is_floating_point() and t.numel() and not _all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise InputError(f"input '{node_name}' has {bad} NaN or infinite value(s); inputs must be finite")


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every value of float ``t`` is finite, in one pass: a finite sum proves it (NaN and
    inf propagate into a sum); a sum that is not finite (also one of finite values that overflows)
    sends the caller to the exact count. A third cheaper than ``aminmax`` on large inputs, one
    call at batch 1."""
    return math.isfinite(float(t.sum()))


def quantize_unit(x: torch.Tensor, bits: int) -> np.ndarray:
    """``x_q = floor(clip(x, 0, 1) * (2^bits - 1) + 1/2)`` as int64 (float64 arithmetic)."""
    m = float((1 << bits) - 1)
    xv = np.clip(x.detach().cpu().numpy().astype(np.float64), 0.0, 1.0)
    return np.floor(xv * m + 0.5).astype(np.int64)


def encode_spikes(enc: Encoding, x: torch.Tensor, steps: int) -> np.ndarray:
    """Encode a static ``[1, B, ...]`` input into a ``[T, B, ...]`` int8 spike train."""
    x = x[0]
    shape = tuple(x.shape)
    n = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    t_idx = np.arange(steps).reshape((steps,) + (1,) * len(shape))
    if enc.kind == "rate":
        m = (1 << enc.bits) - 1
        xq = quantize_unit(x, enc.bits)[None]
        s = 2 * steps * xq >= (2 * t_idx + 1) * m
    elif enc.kind == "bernoulli":
        xq = quantize_unit(x, enc.bits).reshape(shape[0], n)
        r = lfsr.uniform_block(enc.bits, enc.seed, steps, n).astype(np.int64)  # [T, n], same for every sample
        s = (r[:, None, :] <= xq[None]).reshape((steps,) + shape)
    elif enc.kind == "timecode":
        if steps > 62:
            raise InputError(f"timecode encoding supports at most 62 steps, got {steps}")
        xq = quantize_unit(x, steps)[None]
        s = (xq >> (steps - 1 - t_idx)) & 1
    elif enc.kind == "latency":
        m = (1 << enc.bits) - 1
        xq = quantize_unit(x, enc.bits)
        t_star = (2 * (m - xq) * (steps - 1) + m) // (2 * m)
        s = t_idx == t_star[None]
    else:
        raise ValueError(f"{enc.kind} is not a spike encoding")
    return np.asarray(s, dtype=np.int8)


def encode(op: Input, x: torch.Tensor, steps: int, mode: str) -> torch.Tensor:
    """Per-step input values ``[T, B, ...]`` for an engine.

    Args:
        op: the input node's op.
        x: ``[T, B, ...]`` (or ``[1, B, ...]`` for static inputs) from `to_time_major`.
        steps: ``T``.
        mode: ``"float"`` (float32 values) or ``"int"`` (int64 values, using ``op.q``).
    """
    kind = op.encoding.kind
    if kind in ("current", "spikes"):
        if mode == "float":
            v = x.to(torch.float32)
        elif kind == "spikes":
            v = _int_spikes(x)
        else:
            q = op.q
            if q is None:
                raise ValueError("input has no integer parameters (q): run the quantize pass")
            v = quantize_current(x, q.frac_bits, q.bits)
        return v.expand((steps,) + tuple(v.shape[1:])) if op.layout == "B" else v
    s = torch.from_numpy(encode_spikes(op.encoding, x, steps))
    return s.to(torch.float32) if mode == "float" else s.to(torch.int64)


def _int_spikes(x: torch.Tensor) -> torch.Tensor:
    """Integer spike values as int64."""
    if not x.is_floating_point():
        return x.to(torch.int64)
    if _integral(x) is None:
        raise InputError("a 'spikes' input must hold integer values (0/1 or graded counts)")
    return x.to(torch.int64)


def _integral(x: torch.Tensor, block: int = 1 << 18, small: torch.Tensor | None = None,
              buf: torch.Tensor | None = None) -> tuple[float, float] | None:
    """``(min, max)`` of float ``x`` when every value is a (finite) integer, else None: rounding is exact in
    the input's own float type (every float beyond its mantissa is an integer); in cache-sized
    blocks (3x faster on large inputs than rounding the whole tensor), each block's extremes
    taken while it is in cache. ``small``: a contiguous uint8 tensor of ``x``'s shape, filled with
    ``x``'s values while each block is in cache, as long as the values so far are within [0, 127]
    (so all of it when the extremes are). ``buf``: scratch of ``x``'s type, at least a block or
    ``x``'s size (the steps of a batch chunk share one: a new one each would take its page
    faults again, which cost more than the checks)."""
    if x.numel() == 0:
        return 0.0, 0.0
    if not x.is_contiguous():  # a batch chunk of a [T, B, ...] input: each step is contiguous
        buf = torch.empty(min(block, x[0].numel()), dtype=x.dtype)
        found = [_integral(step, block, None if small is None else small[t], buf) for t, step in enumerate(x)]
        if any(f is None for f in found):
            return None
        return min(f[0] for f in found), max(f[1] for f in found)  # type: ignore[index]
    flat = x.reshape(-1)
    if small is not None and x.dtype == torch.float32 and flat.numel() >= COMPILED_MIN:
        from . import int_input  # numba: the integer engine imports it for its neurons anyway

        found = int_input.check(flat.detach().numpy(), small.view(-1).numpy())
        if found is not None:
            return found
        # else a value outside [0, 127] (or not an integer): the passes below say which
    if buf is None:
        buf = torch.empty(min(block, flat.numel()), dtype=x.dtype)
    lo, hi = float("inf"), float("-inf")
    # numpy's round / compare / min / max take half the time of torch's on one core on large
    # inputs (torch.equal is the slow part); bfloat16 and half have no numpy type
    np_ok = x.dtype in (torch.float32, torch.float64) and flat.numel() >= 1 << 14  # (small: numpy's call overhead)
    out = None if small is None else small.view(-1)
    for start in range(0, flat.numel(), block):
        part = flat[start:start + block]
        if np_ok:
            p, r = part.detach().numpy(), buf[:part.numel()].numpy()
            if out is not None and 0 <= lo and hi <= 127 and _small_copy(p, out[start:start + block].numpy()):
                o = out[start:start + block].numpy()
                lo, hi = min(lo, float(o.min())), max(hi, float(o.max()))
                continue
            if not np.array_equal(np.round(p, out=r), p):
                return None
            a, b = p.min(), p.max()
        else:
            if not torch.equal(torch.round(part, out=buf[:part.numel()]), part):
                return None
            a, b = torch.aminmax(part)
        lo, hi = min(lo, float(a)), max(hi, float(b))
        if out is not None and 0 <= lo and hi <= 127:
            if np_ok:
                np.copyto(out[start:start + block].numpy(), p, casting="unsafe")
            else:
                out[start:start + block].copy_(part)
    # infinities round to themselves: not integers (`check_finite` names them)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


COMPILED_MIN = 1 << 16
"""Spike inputs (per contiguous block) of this many float32 values or more are checked and
converted by `int_input`'s compiled pass (smaller ones: numpy's, without numba's import)."""


def _small_copy(p: np.ndarray, o: np.ndarray) -> bool:
    """Copy float values ``p`` into uint8 ``o`` and return whether the copy equals them: then every
    value is an integer within [0, 255] (any other value's conversion differs from it), proven
    with two passes instead of rounding, comparing and copying (spikes only weighted sums read)."""
    with np.errstate(invalid="ignore"):  # values beyond uint8 convert to something: then unequal
        np.copyto(o, p, casting="unsafe")
    return bool(np.array_equal(o, p))


def encode_int_spikes_float(op: Input, x: torch.Tensor, steps: int,
                            small: bool = False) -> tuple[torch.Tensor, tuple[float, float]] | None:
    """`encode` for the integer engine of a ``spikes`` input whose values may stay float (exact
    integers: readers that only multiply them by weights in float save two conversions), with the
    values' ``(min, max)``; None when the input is not one. ``small``: values within [0, 127] come
    as uint8 instead (converted while checked: the readers' int8 products take them as they are)."""
    if op.encoding.kind != "spikes" or not x.is_floating_point():
        return None
    u8 = torch.empty(x.shape, dtype=torch.uint8) if small else None
    found = _integral(x, small=u8)
    if found is None:
        raise InputError("a 'spikes' input must hold integer values (0/1 or graded counts)")
    if u8 is not None and 0 <= found[0] and found[1] <= 127:
        x = u8
    return (x.expand((steps,) + tuple(x.shape[1:])) if op.layout == "B" else x), found


def quantize_current(x: torch.Tensor, frac_bits: int, bits: int) -> torch.Tensor:
    """``clip(round_half_away(x * 2^frac_bits), -2^(bits-1), 2^(bits-1) - 1)`` as int64."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if x.numel() < 1 << 14 and x.dtype in (torch.float32, torch.float64):
        # the same float64 operations in numpy: a fifth of torch's per-call cost on small inputs (batch 1)
        v = x.detach().numpy().astype(np.float64) * (2.0**frac_bits)
        v = np.trunc(np.add(v, np.copysign(0.5, v), out=v), out=v)
        return torch.from_numpy(np.clip(v, lo, hi, out=v).astype(np.int64))
    v = x.to(torch.float64) * (2.0**frac_bits)
    # round half away from zero as trunc(v +- 0.5): v has at most 24 significant bits (a float32
    # times a power of two), so adding 0.5 is exact in float64 and equals sign(v) floor(|v| + 0.5)
    v = torch.trunc(v.add_(torch.copysign(torch.tensor(0.5, dtype=torch.float64), v)))
    return v.clamp_(lo, hi).to(torch.int64)


def decode(op: Output, v: torch.Tensor) -> torch.Tensor:
    """Apply an output's decoding to its ``[T, B, ...]`` values and lay them out."""
    d = op.decoding
    if d == "sequence":
        return v.transpose(0, 1) if op.layout == "BT" else v
    if d == "sum":
        return v.sum(0)
    if d == "mean":
        return v.to(torch.float64).mean(0) if not v.is_floating_point() else v.mean(0)
    if d == "last":
        return v[-1]
    if d == "max":
        return v.max(0).values
    raise ValueError(d)
