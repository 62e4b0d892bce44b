"""Inter-token NPEs (paper sections V-VI): spiking self-attention, stochastic-computing
attention, and linear attention / spiking SSM.

Shapes are per sample and per step, with optional leading head axes ``H...``:
queries ``(H..., N, Dk)``, keys ``(H..., M, Dk)``, values ``(H..., M, Dv)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..values import QAttention, QLinearAttention
from .base import Op, Shape, as_array, check_choice, check_int, freeze

SCORES = ("and", "xnor", "axnor")


def _qkv_shapes(q: Shape, k: Shape, v: Shape, who: str) -> tuple[Shape, int, int]:
    if len(q) < 2 or len(k) != len(q) or len(v) != len(q):
        raise ValueError(f"{who}: q, k, v must have the same rank (>= 2), got {q}, {k}, {v}")
    if q[:-2] != k[:-2] or q[:-2] != v[:-2]:
        raise ValueError(f"{who}: head axes differ: {q[:-2]}, {k[:-2]}, {v[:-2]}")
    if q[-1] != k[-1]:
        raise ValueError(f"{who}: query and key widths differ ({q[-1]} vs {k[-1]})")
    if k[-2] != v[-2]:
        raise ValueError(f"{who}: {k[-2]} keys but {v[-2]} values")
    return tuple(q[:-2]), q[-2], v[-1]


@dataclass(frozen=True, eq=False)
class SpikeAttention(Op):
    """Spiking self-attention with coincidence scores (paper VI-B), no softmax.

    Inputs ``Q``, ``K``, ``V`` are binary spike tensors. With ``a`` the weight of
    a (0, 0) coincidence::

        S = Q K^T + a (1 - Q)(1 - K)^T          # S[i, j] = #(q=k=1) + a #(q=k=0)
        Y = scale * S V                           (order "qk_v")
        Y = scale * (Q (K^T V) + a (1 - Q)((1 - K)^T V))   (order "q_kv", same integers)

    ``score="and"`` is Spikformer's SSA (``a = 0``: ``popcount(q AND k)``);
    ``"xnor"`` counts matching bits (``a = 1``: ``d - popcount(q XOR k)``);
    ``"axnor"`` uses the given ``a``. The output is a current (usually into a
    `LIF`, Spikformer's ``LIF((Q K^T) V * s)``). For binary inputs every
    intermediate is an integer, so float32 results are exact while counts stay
    below 2^24 and ``scale`` and ``a`` are dyadic.
    Integer form ``q``: ``Y_int = (S_int V * mult) >> shift`` with
    ``S_int = Q K^T 2^a_frac + a_int (1-Q)(1-K)^T``.
    """

    score: str = "and"
    a: float = 0.0
    scale: float = 0.125
    order: str = "qk_v"
    q: QAttention | None = None

    arity = 3
    kind = "attention"
    roles = frozenset({"weighted"})

    def __post_init__(self) -> None:
        check_choice(self.score, "score", SCORES)
        check_choice(self.order, "order", ("qk_v", "q_kv"))
        a = {"and": 0.0, "xnor": 1.0}.get(self.score, float(self.a))
        if self.score != "axnor" and float(self.a) not in (0.0, a):
            raise ValueError(f"field 'a': score '{self.score}' fixes a = {a}")
        if not np.isfinite(a) or a < 0:
            raise ValueError("field 'a': must be a finite non-negative number")
        freeze(self, a=a, scale=float(self.scale))

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        heads, n, dv = _qkv_shapes(*map(tuple, in_shapes), "SpikeAttention")
        return {"out": (*heads, n, dv)}


@dataclass(frozen=True, eq=False)
class StochasticAttention(Op):
    """Stochastic-computing attention (Xpikeformer): AND multiplies independent Bernoulli streams.

    Inputs are binary spike tensors per step (Bernoulli streams). With ``M =
    2^bits - 1`` and two LFSR streams ``r1``, ``r2`` from different primitive
    polynomials (`npuc.sim.lfsr.primitive_taps(bits, 0 and 1)`), seeded with
    ``seed`` and ``seed2``, advancing once per element per step (row-major)::

        C1[i, j] = popcount(Q_t[i] AND K_t[j])                    in 0..Dk
        A_t[i, j] = 1[r1 <= floor(C1 * M / norm_qk + 1/2)]        ~ Bern(clip(Q_t K_t^T / norm_qk))
        C2[i, d] = sum_j A_t[i, j] V_t[j, d]                      in 0..M_keys
        O_t[i, d] = 1[r2 <= floor(C2 * M / norm_av + 1/2)]        ~ Bern(clip(A_t V_t / norm_av))

    (probabilities clip at 1). ``norm_qk`` defaults to ``Dk`` and ``norm_av`` to
    the number of keys. Every quantity is an integer, so the float and integer
    engines and the RTL agree bit for bit; the output is a spike tensor.
    """

    bits: int = 16
    seed: int = 1
    seed2: int = 1
    norm_qk: int = 0
    norm_av: int = 0

    arity = 3
    kind = "attention"
    roles = frozenset({"population"})

    def __post_init__(self) -> None:
        check_int(self.bits, "bits", 3, 32)
        check_int(self.seed, "seed", 1, 2**self.bits - 1)
        check_int(self.seed2, "seed2", 1, 2**self.bits - 1)
        check_int(self.norm_qk, "norm_qk", 0)
        check_int(self.norm_av, "norm_av", 0)

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        heads, n, dv = _qkv_shapes(*map(tuple, in_shapes), "StochasticAttention")
        return {"out": (*heads, n, dv)}

    def norms(self, dk: int, m: int) -> tuple[int, int]:
        return (self.norm_qk or dk, self.norm_av or m)


@dataclass(frozen=True, eq=False)
class LinearAttention(Op):
    """Causal linear attention / spiking SSM over the time (token) axis (paper eqs. 16-20).

    Per step t (one token), inputs ``q_t``, ``k_t`` of shape ``(H..., Dk)`` and
    ``v_t`` of shape ``(H..., Dv)``; state ``S`` of shape ``(H..., Dv, Dk)``::

        S_t = a * S_{t-1} + b * v_t k_t^T        # per value channel c: a LIF without reset
        y_t = S_t q_t                              # (H..., Dv)

    With ``a = b = 1`` this is causal linear attention. ``a`` may be per value
    channel (shape ``(Dv,)`` or broadcastable to the state). Integer form
    ``q``: ``S = R(S * (2^decay_bits - da) / 2^decay_bits) + b_int v k^T``,
    ``y = (S q * mult) >> shift`` with the profile's decay rounding.
    """

    a: np.ndarray = 1.0  # type: ignore[assignment]
    b: float = 1.0
    q: QLinearAttention | None = None

    arity = 3
    kind = "attention"
    roles = frozenset({"population"})
    stateful = True

    def __post_init__(self) -> None:
        freeze(self, a=as_array(self.a, "a"), b=float(self.b))
        if np.any(self.a < 0) or np.any(self.a > 1):
            raise ValueError("field 'a': decays must lie in [0, 1]")

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        q, k, v = map(tuple, in_shapes)
        if q != k:
            raise ValueError(f"LinearAttention: query {q} and key {k} shapes differ")
        if q[:-1] != v[:-1]:
            raise ValueError(f"LinearAttention: head axes differ: {q[:-1]} vs {v[:-1]}")
        state = (*v, q[-1])
        try:
            np.broadcast_shapes(self.a.shape if self.a.ndim != 1 else (self.a.shape[0], 1), state)
        except ValueError:
            raise ValueError(f"field 'a': shape {self.a.shape} does not fit the state {state}") from None
        return {"out": tuple(v)}

    def decay(self, dv: int) -> np.ndarray:
        """``a`` broadcast to the state ``(..., Dv, Dk)`` (a per-channel vector applies to Dv)."""
        return self.a.reshape(-1, 1) if self.a.ndim == 1 else self.a
