"""The integer engine's check of float spike inputs as one compiled pass (numba): every value an
integer within [0, 127], converted to the uint8 the int8 products take, and the extremes, where
numpy needs a conversion, a comparison and two reductions (on norse's SHD input, 140 MB at batch
1,000, those passes took about a third of the integer engine's run).

Compiled once per machine and cached on disk as `int_fused`'s kernels are (importing it sets the
cache directory); one variant (float32).
"""

from __future__ import annotations

import numpy as np

from .int_fused import _compile_notice, numba


@numba.njit(cache=True, nogil=True)
def small_ints(p, o):
    """Copy float32 ``p`` into uint8 ``o`` (both 1-d, one length) and return ``(ok, lo, hi)``: ``ok``
    when every value is an integer within [0, 127] (NaN and every other value fail the range test
    or the round trip), then ``lo`` and ``hi`` are the extremes. Without branches: the loop
    vectorizes."""
    lo, hi, bad = np.uint8(255), np.uint8(0), False
    zero = np.float32(0.0)
    for i in range(p.shape[0]):
        v = p[i]
        inside = (v >= zero) & (v <= np.float32(127.0))
        u = np.uint8(v if inside else zero)  # converted only within range (beyond it the conversion is undefined)
        bad |= np.float32(u) != v
        o[i] = u
        lo, hi = min(lo, u), max(hi, u)
    return not bad, lo, hi


def check(p: np.ndarray, o: np.ndarray) -> tuple[float, float] | None:
    """`small_ints`: the extremes, or None when a value is not an integer within [0, 127]."""
    with _compile_notice(("float32 spike", "uint8")):
        ok, lo, hi = small_ints(p, o)
    return (float(lo), float(hi)) if ok else None
