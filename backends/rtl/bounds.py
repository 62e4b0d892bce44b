"""Exact integer ranges of every value the RTL computes, and the bit widths that follow.

The golden integer engine computes in int64; the hardware must hold each
intermediate value exactly (or wrap/saturate exactly where the profile says
so). `Range` is a closed integer interval with the operations the datapath
performs; the emitter sizes every register and wire from these ranges.
Recurrent state (u, v, spikes) is bounded by a fixed point: the smallest
range, found by iteration with widening, that one neuron update maps into
itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class UnboundedError(ValueError):
    """A value without a finite hardware bound (e.g. a membrane with no overflow rule)."""


def signed_bits(v: int) -> int:
    """Width of the smallest two's complement register holding ``v``."""
    return (v if v >= 0 else ~v).bit_length() + 1


def unsigned_bits(v: int) -> int:
    """Width of the smallest unsigned register holding ``v`` (at least 1)."""
    return max(1, int(v).bit_length())


@dataclass(frozen=True)
class Range:
    """Closed integer interval ``[lo, hi]``."""

    lo: int
    hi: int

    @staticmethod
    def of(*values: int) -> Range:
        return Range(min(values), max(values))

    @property
    def bits(self) -> int:
        """Signed width that holds every value of the range."""
        return max(signed_bits(self.lo), signed_bits(self.hi))

    @property
    def mag(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    def __add__(self, o: Range) -> Range:
        return Range(self.lo + o.lo, self.hi + o.hi)

    def __sub__(self, o: Range) -> Range:
        return Range(self.lo - o.hi, self.hi - o.lo)

    def __mul__(self, o: Range) -> Range:
        p = [self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi]
        return Range(min(p), max(p))

    def hull(self, o: Range) -> Range:
        return Range(min(self.lo, o.lo), max(self.hi, o.hi))

    def within(self, o: Range) -> bool:
        return o.lo <= self.lo and self.hi <= o.hi

    def shift(self, e: int) -> Range:
        """``x << e`` or floor ``x >> -e``."""
        if e >= 0:
            return Range(self.lo << e, self.hi << e)
        return Range(self.lo >> -e, self.hi >> -e)

    def vmax(self, o: Range) -> Range:
        """Range of ``max(x, y)``."""
        return Range(max(self.lo, o.lo), max(self.hi, o.hi))


def register_range(bits: int) -> Range:
    return Range(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def overflow(r: Range, bits: int, mode: str) -> Range:
    """Output range of `npuc.sim.int_kernels.overflow` on inputs in ``r``."""
    if mode == "none" or bits == 0:
        return r
    half = 1 << (bits - 1)
    if mode == "wrap":
        return r if r.within(register_range(bits)) else register_range(bits)
    if mode == "saturate":
        return Range(min(max(r.lo, -half), half - 1), min(max(r.hi, -half), half - 1))
    if mode == "saturate_sym":
        return Range(min(max(r.lo, -half + 1), half - 1), min(max(r.hi, -half + 1), half - 1))
    if mode == "wrap_sym":
        # y = x - 2h if x > h; then x + 2h if y <= -h (only x <= -h qualifies)
        parts = []
        mid = Range(max(r.lo, -half + 1), min(r.hi, half))
        if mid.lo <= mid.hi:
            parts.append(mid)
        if r.hi > half:
            parts.append(Range(max(r.lo, half + 1) - 2 * half, r.hi - 2 * half))
        if r.lo <= -half:
            parts.append(Range(r.lo + 2 * half, min(r.hi, -half) + 2 * half))
        out = parts[0]
        for p in parts[1:]:
            out = out.hull(p)
        return out
    raise ValueError(mode)


def rounding_shift(p: int, shift: int, rounding: str) -> int:
    """``R(p / 2^shift)`` as `npuc.sim.int_kernels.decay` rounds."""
    if rounding == "trunc0":
        return -((-p) >> shift) if p < 0 else p >> shift
    if rounding == "floor":
        return p >> shift
    return (p + (1 << (shift - 1))) >> shift


def decay(r: Range, mult: int | Range, shift: int, rounding: str) -> tuple[Range, Range]:
    """(result range, product range) of ``R(x * mult / 2^shift)``; R is monotone. ``mult`` is one
    multiplier or the range of per-neuron ones."""
    prod = r * (mult if isinstance(mult, Range) else Range(mult, mult))
    return Range(rounding_shift(prod.lo, shift, rounding), rounding_shift(prod.hi, shift, rounding)), prod


class WidthLog:
    """Collects the ranges of intermediate values to size the compute width."""

    def __init__(self) -> None:
        self.bits = 2

    def see(self, *ranges: Range) -> None:
        for r in ranges:
            self.bits = max(self.bits, r.bits)

    def see_bits(self, bits: int) -> None:
        self.bits = max(self.bits, bits)


def fixpoint(start: Range, update: Callable[[Range], Range], what: str, limit_bits: int = 96) -> Range:
    """Smallest found range ``R`` containing ``start`` with ``update(R)`` inside ``R``.

    Iterates ``R = hull(R, update(R))``; when that is slow to settle (a leaky
    integrator approaches its bound geometrically) it widens ``R`` by doubling,
    which always ends on an invariant range if one exists below ``limit_bits``.

    Raises:
        UnboundedError: no invariant range below ``limit_bits`` bits.
    """
    r = start
    for it in range(400):
        nxt = r.hull(update(r))
        if nxt == r:
            return r
        r = nxt
        if it >= 24:
            r = Range(2 * r.lo - 1 if r.lo < 0 else r.lo, 2 * r.hi + 1 if r.hi > 0 else r.hi)
        if r.bits > limit_bits:
            break
    raise UnboundedError(f"{what} has no finite bound below {limit_bits} bits")
