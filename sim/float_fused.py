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


@numba.njit(cache=True)
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
