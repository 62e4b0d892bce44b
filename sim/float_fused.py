"""Fused float neuron steps: a SpikingJelly ``IFNode`` layer's whole time loop outside recurrent
loops in one compiled call (numba), instead of ~6 tensor operations and a Python step per step
(at batch 1 the per-call costs of those are most of a small layer's time).

The same float32 operations in the same order as the ``spikingjelly`` form
(`float_forms.spikingjelly`, charge code 0, a finite threshold): ``v = x + v0`` at the first step,
``v + x`` after it; spikes ``v >= v_threshold`` as 1.0 / 0.0; then the hard reset
``(1 - s) * v + s * v_reset`` or the soft one ``v - s * v_threshold``. Every operand is a float32
and every operation one IEEE float32 operation (numba contracts no multiply-add without
``fastmath``), so the bits are those of the torch form: the tests compare both on values at,
around and far from the threshold, signed zeros and infinities.

Compiled once per machine and cached on disk as `int_fused`'s kernels are (importing it sets the
cache directory); one variant (float32).
"""

from __future__ import annotations

import numpy as np
import torch

from .int_fused import _BLOCK, _compile_notice, numba


@numba.njit(cache=True, nogil=True)
def if_steps(x, consts, hard, out_s, out_v):
    """Every step of an IF layer: ``x`` ``[T, M]`` float32 inputs; ``consts`` float32
    ``(v0, v_threshold, v_reset)``; ``hard``: the hard reset (else the soft one); ``out_s``
    ``[T, M]`` float32 spike rows; ``out_v`` ``[T, M]`` membrane rows, or no rows (not written)."""
    steps, m = x.shape
    v0, thr, vr = consts[0], consts[1], consts[2]
    one = np.float32(1.0)
    v = np.empty(_BLOCK, np.float32)
    keep_v = out_v.shape[0] > 0
    for j0 in range(0, m, _BLOCK):
        n = min(_BLOCK, m - j0)
        for t in range(steps):
            xt, st = x[t, j0:j0 + n], out_s[t, j0:j0 + n]
            for j in range(n):
                h = xt[j] + v0 if t == 0 else v[j] + xt[j]
                s = np.float32(h >= thr)
                if hard:
                    h = (one - s) * h + s * vr
                else:
                    h = h - s * thr
                v[j] = h
                st[j] = s
            if keep_v:
                out_v[t, j0:j0 + n] = v[:n]


def if_layer(x: torch.Tensor, consts: np.ndarray, hard: bool, want_v: bool) -> dict[str, torch.Tensor]:
    """`if_steps` on ``x`` (``[T, B, ...]`` float32): the ``[T, B, ...]`` spikes, the membranes when
    ``want_v``, and the input (SpikingJelly's current port ``i``)."""
    steps = x.shape[0]
    xn = x.contiguous().numpy().reshape(steps, -1)
    s = torch.empty(x.shape, dtype=torch.float32)
    v = torch.empty(x.shape, dtype=torch.float32) if want_v else None
    vn = v.numpy().reshape(steps, -1) if want_v else np.empty((0, 0), dtype=np.float32)
    with _compile_notice(("float32 IF", "float32")):
        if_steps(xn, consts, hard, s.numpy().reshape(steps, -1), vn)
    out = {"spikes": s, "i": x}
    if want_v:
        out["v"] = v
    return out


@numba.njit(cache=True, nogil=True)
def norse_lif_step(i, x, rec, v, consts, first, z_out, v_out, i_out):
    """One step of a norse ``LIFCell`` layer (1-d float32 rows of one length): ``i`` the last
    current, ``x`` the input, ``rec`` a second input term (or no values), ``v`` the last membrane
    (not read at the first step, which starts from ``v_leak``); ``consts`` float32 ``(c_mem, c_syn,
    v_leak, v_th, v_reset)``."""
    c_mem, c_syn, v_leak, v_th, v_reset = consts[0], consts[1], consts[2], consts[3], consts[4]
    one, zero = np.float32(1.0), np.float32(0.0)
    two = rec.shape[0] > 0
    for j in range(i.shape[0]):
        vj = v_leak if first else v[j]
        i_new = i[j] + x[j]
        if two:
            i_new = i_new + rec[j]
        v_dec = vj + c_mem * ((v_leak - vj) + i_new)
        z = np.float32((v_dec - v_th) > zero)
        v_out[j] = (one - z) * v_dec + z * v_reset
        i_out[j] = i_new + c_syn * i_new
        z_out[j] = z


NORSE_ARGS = ("c_mem", "c_syn", "v_leak", "v_th", "v_reset")


def norse_lif(a, st: dict, x, t: int):
    """`float_forms.norse_lif`'s step by `norse_lif_step`: ``(z, v, i)``, or None where it does not
    apply (parameters per neuron, more than two input terms, inputs other than float32)."""
    from .float_forms import _row

    terms = x if isinstance(x, tuple) else (x,)
    i = st["i"]
    if (len(terms) > 2 or not all(k in a.flags for k in NORSE_ARGS)
            or any(u.dtype != torch.float32 or u.shape != i.shape for u in (i, *terms))):
        return None
    consts = st.get("lib_consts")
    if consts is None:
        consts = st["lib_consts"] = np.array([a.flags[k] for k in NORSE_ARGS], dtype=np.float32)
    flat = lambda u: u.contiguous().numpy().reshape(-1)  # noqa: E731
    v = st["v"] if t else i  # (not read at the first step)
    z = _row(st, i)
    if not z.is_contiguous():  # a batch-major buffer's row: written through a copy it would stay empty
        z = torch.empty_like(i)
    v_new, i_new = torch.empty_like(i), torch.empty_like(i)
    rec = flat(terms[1]) if len(terms) == 2 else np.empty(0, dtype=np.float32)
    with _compile_notice(("float32 norse LIF", "float32")):
        norse_lif_step(flat(i), flat(terms[0]), rec, flat(v), consts, t == 0, flat(z), flat(v_new), flat(i_new))
    return z, v_new, i_new
