"""Independent, deliberately naive implementations of the IR semantics for tests.

Float references are explicit per-step loops in float32 torch following the
equations in the op docstrings. Integer references use Python integers, one
neuron at a time, written from the `QLIF` / `NumericProfile` docstrings rather
than from the engine's code.
"""

from __future__ import annotations

import numpy as np
import torch

# -- float LIF ---------------------------------------------------------------------


def lif_float(op, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-step loop of the `LIF` equations (npuc form), x: [T, B, ...] float32."""
    f32 = lambda a: torch.tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    alpha, gain, bias, th = f32(op.alpha), f32(op.gain), f32(op.bias), f32(op.threshold)
    th_lo = f32(op.threshold_lo) if op.threshold_lo is not None else None
    ai = f32(op.alpha_i) if op.alpha_i is not None else None
    T = x.shape[0]
    v = torch.full_like(x[0], op.v_init)
    i = torch.zeros_like(x[0])
    s_prev = torch.zeros_like(x[0])
    S, V, Cur = [], [], []
    for t in range(T):
        i_prev = i
        i = ai * i + x[t] if ai is not None else x[t]
        if op.reset_timing == "delayed" and op.reset == "value":
            v = torch.where(s_prev != 0, torch.tensor(op.reset_value, dtype=torch.float32), v)
        h = alpha * v + gain * (i_prev if op.charge == "previous" else i) + bias
        if op.reset_timing in ("delayed", "delayed_charge") and op.reset == "subtract":
            h = h - _amount(op, s_prev, th, th_lo)
        if op.reset_timing == "delayed_charge" and op.reset == "value":
            h = torch.where(s_prev != 0, torch.tensor(op.reset_value, dtype=torch.float32), h)
            if op.charge == "previous":
                i = torch.where(s_prev != 0, torch.zeros_like(i), i)
        if op.spike == "binary":
            s = (h > th) if op.compare == "gt" else (h >= th)
            s = s.float()
        elif op.spike == "ternary":
            if op.compare == "gt":
                s = (h > th).float() - (h < th_lo).float()
            else:
                s = (h >= th).float() - (h <= th_lo).float()
        elif op.spike == "multilevel":
            s = torch.clamp(torch.floor(h / th), min=0)
            if op.levels is not None:
                s = torch.clamp(s, max=op.levels - 1)
        else:
            raise NotImplementedError
        if op.reset_timing == "same":
            if op.reset == "subtract":
                v = h - _amount(op, s, th, th_lo)
            elif op.reset == "value":
                v = torch.where(s != 0, torch.tensor(op.reset_value, dtype=torch.float32), h)
            else:
                v = h
        else:
            v = h
        if op.v_min is not None:
            v = torch.maximum(v, f32(op.v_min))
        s_prev = s
        S.append(s)
        V.append(v)
        Cur.append(i)
    return {"spikes": torch.stack(S), "v": torch.stack(V), "i": torch.stack(Cur)}


def _amount(op, s, th, th_lo):
    if op.spike == "ternary":
        out = torch.zeros_like(s)
        out = torch.where(s > 0, th.expand_as(s), out)
        out = torch.where(s < 0, th_lo.expand_as(s), out)
        return out
    return s * th


# -- integer semantics ---------------------------------------------------------------


def ovf(x: int, bits: int, mode: str) -> int:
    if mode == "none" or bits == 0:
        return x
    half = 2 ** (bits - 1)
    if mode == "wrap":
        return (x + half) % (2 * half) - half
    if mode == "wrap_sym":
        if x > half:
            return x - 2 * half
        if x <= -half:
            return x + 2 * half
        return x
    if mode == "saturate":
        return max(-half, min(half - 1, x))
    if mode == "saturate_sym":
        return max(-(half - 1), min(half - 1, x))
    raise ValueError(mode)


def rdecay(x: int, mult: int, bits: int, rounding: str) -> int:
    p = x * mult
    if rounding == "trunc0":
        return (abs(p) >> bits) * (1 if p >= 0 else -1)
    if rounding == "floor":
        return p >> bits
    return (p + (1 << (bits - 1))) >> bits


def lif_int(op, prof, a: np.ndarray) -> dict[str, np.ndarray]:
    """Scalar Python-int loop; a: [T, B, N] integer inputs."""
    q = op.q
    T, B, N = a.shape
    D = 1 << prof.decay_bits
    bias = np.broadcast_to(np.asarray(q.bias_mant, dtype=object), (N,))
    S = np.zeros((T, B, N), dtype=np.int64)
    V = np.zeros((T, B, N), dtype=np.int64)
    U = np.zeros((T, B, N), dtype=np.int64)
    vth = q.vth << prof.vth_shift
    vlo = (q.vth_lo << prof.vth_shift) if q.vth_lo is not None else None
    for b in range(B):
        for n in range(N):
            u = s_prev = 0
            v = q.v_init
            vmin = None if q.v_min is None else int(np.broadcast_to(q.v_min, (N,))[n])
            be = int(bias[n]) << q.bias_exp if q.bias_exp >= 0 else int(bias[n]) >> -q.bias_exp
            for t in range(T):
                x = ovf(int(a[t, b, n]), prof.act_bits, prof.act_overflow)
                u_prev = u
                u = rdecay(u, D - q.du - prof.du_offset, prof.decay_bits, prof.decay_rounding)
                u = ovf(u + ovf(x << prof.act_shift, prof.arith_bits, "wrap"), prof.arith_bits, "wrap")
                u = ovf(u, prof.u_bits, prof.u_overflow)
                if op.reset_timing == "delayed" and op.reset == "value" and s_prev != 0:
                    v = q.reset_value
                charge = u_prev if op.charge == "previous" else u
                h = ovf(ovf(rdecay(v, D - q.dv - prof.dv_offset, prof.decay_bits, prof.decay_rounding) + charge, prof.arith_bits,
                            "wrap") + be, prof.arith_bits, "wrap")
                if op.reset_timing in ("delayed", "delayed_charge") and op.reset == "subtract":
                    h -= _iamount(op, s_prev, vth, vlo)
                if op.reset_timing == "delayed_charge" and op.reset == "value" and s_prev != 0:
                    h = q.reset_value
                    if op.charge == "previous":
                        u = 0
                h = ovf(h, prof.v_bits, prof.v_overflow)
                if op.spike == "binary":
                    s = int(h > vth) if op.compare == "gt" else int(h >= vth)
                elif op.spike == "ternary":
                    if op.compare == "gt":
                        s = 1 if h > vth else (-1 if h < vlo else 0)
                    else:
                        s = 1 if h >= vth else (-1 if h <= vlo else 0)
                elif op.spike == "multilevel":
                    s = max(0, h // vth)
                    if op.levels is not None:
                        s = min(s, op.levels - 1)
                else:
                    raise NotImplementedError
                if op.reset_timing == "same" and op.reset == "subtract":
                    v = h - _iamount(op, s, vth, vlo)
                elif op.reset_timing == "same" and op.reset == "value" and s != 0:
                    v = q.reset_value
                else:
                    v = h
                if vmin is not None:
                    v = max(v, vmin)
                s_prev = s
                S[t, b, n], V[t, b, n], U[t, b, n] = s, v, u
    return {"spikes": S, "v": V, "i": U}


def _iamount(op, s, vth, vlo):
    if op.spike == "ternary":
        return vth if s > 0 else (vlo if s < 0 else 0)
    return s * vth


def dense_int(x: np.ndarray, w: np.ndarray, exp: int, bias=None) -> np.ndarray:
    """x: [..., in] ints; Python-int dot products (exact), then shift (floor) and bias."""
    xs = x.reshape(-1, x.shape[-1]).astype(object)
    out = np.zeros((xs.shape[0], w.shape[0]), dtype=object)
    wo = w.astype(object)
    for r in range(xs.shape[0]):
        for o in range(w.shape[0]):
            acc = int(sum(wo[o] * xs[r]))
            acc = acc << exp if exp >= 0 else acc >> -exp
            if bias is not None:
                acc += int(bias[o])
            out[r, o] = acc
    return out.astype(np.int64).reshape(x.shape[:-1] + (w.shape[0],))


# -- LFSR and attention scores ------------------------------------------------------


def lfsr_states(width: int, taps: int, seed: int, n: int) -> list[int]:
    """Fibonacci LFSR, one shift at a time: the new bit is the parity of ``state & taps``;
    returns the ``n`` states after each shift."""
    s, out = seed, []
    for _ in range(n):
        fb = bin(s & taps).count("1") & 1
        s = ((s << 1) | fb) & ((1 << width) - 1)
        out.append(s)
    return out


def popcount_scores(q: np.ndarray, k: np.ndarray, a: float) -> np.ndarray:
    """Coincidence scores S[i, j] = #(q_i = k_j = 1) + a #(q_i = k_j = 0), one pair at a time."""
    n, m = q.shape[0], k.shape[0]
    s = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            both = int(np.sum((q[i] == 1) & (k[j] == 1)))
            none = int(np.sum((q[i] == 0) & (k[j] == 0)))
            s[i, j] = both + a * none
    return s


def popcount_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, a: float, scale: float) -> np.ndarray:
    """Y[i] = scale * sum_j S[i, j] v_j with the scores above."""
    return popcount_scores(q, k, a) @ v * scale
