"""Linear-feedback shift registers: the exact pseudo-random streams of npuc hardware.

A Fibonacci LFSR of width ``w`` with feedback mask ``taps`` steps as::

    fb = parity(state & taps)
    state = ((state << 1) | fb) & (2^w - 1)

and outputs its whole state (an integer in ``[1, 2^w - 1]``) after each step.
With a primitive feedback polynomial the period is ``2^w - 1`` and the state
never reaches 0. The RTL templates implement exactly this update, so the golden
simulators and the hardware see the same numbers.

Streams that are ANDed together must be independent: use different primitive
polynomials (`primitive_taps(w, k)` for k = 0, 1, ...), never one LFSR for
both inputs (see DESIGN.md section 6).
"""

from __future__ import annotations

from functools import cache

import numpy as np


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    for s in (32, 16, 8, 4, 2, 1):
        x ^= x >> np.uint64(s)
    return x & np.uint64(1)


def step(state: np.ndarray, taps: int, width: int) -> np.ndarray:
    """Advance a vector of LFSR states by one step."""
    mask = np.uint64((1 << width) - 1)
    fb = _parity(state & np.uint64(taps))
    return ((state << np.uint64(1)) | fb) & mask


# -- GF(2) matrices as lists of row masks (row i = which state bits feed new bit i) --


def _transition(taps: int, width: int) -> list[int]:
    rows = [taps]  # new bit 0 = feedback
    rows += [1 << (i - 1) for i in range(1, width)]  # new bit i = old bit i-1
    return rows


def _matvec(rows: list[int], s: int) -> int:
    out = 0
    for i, r in enumerate(rows):
        out |= (bin(r & s).count("1") & 1) << i
    return out


def _matmul(a: list[int], b: list[int]) -> list[int]:
    out = []
    for ra in a:
        acc, k = 0, 0
        while ra:
            if ra & 1:
                acc ^= b[k]
            ra >>= 1
            k += 1
        out.append(acc)
    return out


def _matpow(rows: list[int], n: int) -> list[int]:
    width = len(rows)
    result = [1 << i for i in range(width)]
    base = rows
    while n:
        if n & 1:
            result = _matmul(result, base)
        base = _matmul(base, base)
        n >>= 1
    return result


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def is_maximal(taps: int, width: int) -> bool:
    """Whether the LFSR with this feedback mask has period ``2^width - 1``."""
    if not taps >> (width - 1) & 1:
        return False
    a = _transition(taps, width)
    ident = [1 << i for i in range(width)]
    order = (1 << width) - 1
    if _matpow(a, order) != ident:
        return False
    return all(_matpow(a, order // p) != ident for p in _prime_factors(order))


@cache
def primitive_taps(width: int, index: int = 0) -> int:
    """The ``index``-th maximal-length feedback mask of a width, ordered by
    number of taps then value (deterministic; cheap polynomials first)."""
    if not 3 <= width <= 32:
        raise ValueError(f"LFSR width {width} is outside 3..32")
    found = 0
    top = 1 << (width - 1)
    for ntaps in range(2, width + 1, 2):  # maximal LFSRs have an even tap count
        for rest in _masks_with_popcount(width - 1, ntaps - 1):
            taps = top | rest
            if is_maximal(taps, width):
                if found == index:
                    return taps
                found += 1
    raise ValueError(f"fewer than {index + 1} maximal LFSRs of width {width}")


def _masks_with_popcount(nbits: int, k: int):
    from itertools import combinations

    for bits in combinations(range(nbits), k):
        yield sum(1 << b for b in bits)


def stream(width: int, seed: int, count: int, taps: int | None = None) -> np.ndarray:
    """The first ``count`` outputs of an LFSR started at ``seed`` (state after each step).

    Vectorized by leap-forward: lanes start ``L`` steps apart (via a GF(2)
    matrix power) and advance together, so the cost is ``O(count / lanes)``
    numpy operations.

    Args:
        width: register width in bits (3..32).
        seed: initial state, nonzero, below ``2^width``.
        count: number of outputs.
        taps: feedback mask (default: `primitive_taps(width, 0)`).

    Returns:
        ``uint64`` array of shape ``[count]``.
    """
    if taps is None:
        taps = primitive_taps(width)
    if not 0 < seed < (1 << width):
        raise ValueError(f"LFSR seed {seed} must be in 1..{(1 << width) - 1}")
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    lanes = int(min(count, 4096))
    per_lane = -(-count // lanes)
    a = _transition(taps, width)
    jump = _matpow(a, per_lane)
    starts = [seed]
    for _ in range(lanes - 1):
        starts.append(_matvec(jump, starts[-1]))
    state = np.array(starts, dtype=np.uint64)
    out = np.empty((per_lane, lanes), dtype=np.uint64)
    for i in range(per_lane):
        state = step(state, taps, width)
        out[i] = state
    return out.T.reshape(-1)[:count]


def uniform_block(width: int, seed: int, steps: int, n: int, taps: int | None = None) -> np.ndarray:
    """LFSR outputs for ``n`` elements over ``steps`` time steps, shape ``[steps, n]``.

    The register advances once per element per step in row-major order
    (element-fastest), which is how one hardware LFSR walks a vector.
    """
    return stream(width, seed, steps * n, taps).reshape(steps, n)
