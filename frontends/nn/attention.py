"""npuc's trainable inter-token NPEs (paper sections V-VI): spiking self-attention,
stochastic-computing attention, linear attention and the diagonal spiking SSM.

Every forward evaluates exactly the float arithmetic of the golden float engine
(`npuc.sim.attention_kernels`), in the same operation order, so a trained model
and its compiled graph agree bit for bit; gradients flow through the matrix
products (and through straight-through estimators where the forward samples).
Tensors are time-major ``[T, B, ...]``; the IR ops (`npuc.ir.ops.attention`)
state the same semantics per step and per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ...ir.ops import LinearAttention as LinearAttentionOp
from ...ir.ops import SpikeAttention
from ...ir.ops import StochasticAttention as StochasticAttentionOp
from ...sim import lfsr
from ...sim.attention_kernels import round_div, spike_attention
from .neurons import LIF


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-2, -1)


def _check_qkv(who: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, time_major: bool) -> None:
    least = 4 if time_major else 2
    if q.dim() < least or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(f"npuc.nn.{who} takes q, k, v of the same rank >= {least} "
                         f"([T, B, ..., N, D]), got {list(q.shape)}, {list(k.shape)}, {list(v.shape)}")


class SpikingSelfAttention(nn.Module):
    """Coincidence attention on binary spike tensors (Spikformer SSA, paper VI-B), no softmax.

    With ``Q``, ``K``, ``V`` of shape ``[T, B, H..., N, D]`` (``V``: ``[..., M, Dv]``)
    and ``a`` the weight of a (0, 0) coincidence, per step and sample::

        S = Q K^T + a (1 - Q)(1 - K)^T        # S[i, j] = #(q_i = k_j = 1) + a #(q_i = k_j = 0)
        Y = (S V) * scale                                        (order "qk_v")
        Y = (Q (K^T V) + a (1 - Q)((1 - K)^T V)) * scale         (order "q_kv")

    ``score="and"``: ``a = 0`` (``popcount(q AND k)``, Spikformer); ``"xnor"``:
    ``a = 1`` (``D - popcount(q XOR k)``); ``"axnor"``: the given ``a``. For
    binary inputs every intermediate is an integer (times a dyadic ``a``), so
    the float32 result is exact, independent of batch shape, and equal to the
    float engine's bit for bit while counts stay below ``2^24`` and ``a`` and
    ``scale`` are dyadic. The output is a current (Spikformer feeds it to a LIF).
    Gradients flow through the matrix products into Q, K and V.
    """

    def __init__(self, score: str = "and", a: float = 0.0, scale: float = 0.125, order: str = "qk_v") -> None:
        super().__init__()
        self.op = SpikeAttention(score=score, a=a, scale=scale, order=order)  # validates the options

    def to_op(self) -> SpikeAttention:
        """The IR op of this module."""
        return self.op

    def extra_repr(self) -> str:
        return f"score={self.op.score}, a={self.op.a}, scale={self.op.scale}, order={self.op.order}"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q [T, B, H..., N, D]``, ``k [T, B, H..., M, D]``, ``v [T, B, H..., M, Dv]`` -> ``[T, B, H..., N, Dv]``."""
        _check_qkv("SpikingSelfAttention", q, k, v, time_major=False)
        return spike_attention(self.op, q, k, v)


class _StraightThrough(torch.autograd.Function):
    """Forward: the sampled bits; backward: the gradient of the expected value ``p``."""

    @staticmethod
    def forward(ctx, bits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return bits

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, grad


class StochasticAttention(nn.Module):
    """Stochastic-computing attention (Xpikeformer): AND of independent Bernoulli streams multiplies.

    Inputs are binary spike tensors ``[T, B, H..., N, D]`` (keys ``[..., M, D]``,
    values ``[..., M, Dv]``). With ``Mx = 2^bits - 1`` and uniform integers
    ``r1``, ``r2`` in ``[1, Mx]``, per step ``t``::

        C1 = Q_t K_t^T                                   # coincidence counts, 0..D
        A_t = 1[r1 <= floor(C1 Mx / norm_qk + 1/2)]      ~ Bern(clip(Q_t K_t^T / norm_qk, 0, 1))
        C2 = A_t V_t                                     # 0..M
        O_t = 1[r2 <= floor(C2 Mx / norm_av + 1/2)]      ~ Bern(clip(A_t V_t / norm_av, 0, 1))

    ``norm_qk`` defaults to ``D`` and ``norm_av`` to ``M``. With ``rng="lfsr"``
    ``r1``/``r2`` are the hardware streams (`npuc.sim.lfsr`: two different
    primitive polynomials of width ``bits`` seeded with ``seed``/``seed2``, one
    step per element per time step, row-major, the same for every sample), so
    the output equals the float and integer engines and the RTL bit for bit.
    ``rng="torch"`` draws them from torch's generator instead (for training;
    set ``rng="lfsr"`` before compiling). Backward is a straight-through
    estimator: ``dA/dC1 = d clip(C1 / norm_qk, 0, 1)``, ``dO/dC2 = d clip(C2 / norm_av, 0, 1)``.
    """

    def __init__(self, bits: int = 16, seed: int = 1, seed2: int = 1, norm_qk: int = 0, norm_av: int = 0,
                 rng: str = "lfsr") -> None:
        super().__init__()
        if rng not in ("lfsr", "torch"):
            raise ValueError(f"rng: {rng!r} is not 'lfsr' or 'torch'")
        self.op = StochasticAttentionOp(bits=bits, seed=seed, seed2=seed2, norm_qk=norm_qk, norm_av=norm_av)
        self.rng = rng
        self._streams: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def to_op(self) -> StochasticAttentionOp:
        """The IR op of this module (LFSR streams)."""
        return self.op

    def extra_repr(self) -> str:
        o = self.op
        return f"bits={o.bits}, seed={o.seed}, seed2={o.seed2}, norm_qk={o.norm_qk}, norm_av={o.norm_av}, rng={self.rng}"

    def _lfsr(self, steps: int, n1: int, n2: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (steps, n1, n2)
        if key not in self._streams:
            o = self.op
            r1 = lfsr.uniform_block(o.bits, o.seed, steps, n1, lfsr.primitive_taps(o.bits, 0))
            r2 = lfsr.uniform_block(o.bits, o.seed2, steps, n2, lfsr.primitive_taps(o.bits, 1))
            self._streams[key] = (torch.from_numpy(r1.astype(np.int64)), torch.from_numpy(r2.astype(np.int64)))
        return self._streams[key]

    def _sample(self, p_int: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        if r is not None:
            return (r <= p_int).to(torch.float32)
        m = float((1 << self.op.bits) - 1)
        return (torch.rand(p_int.shape) * m < p_int.to(torch.float32)).to(torch.float32)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q [T, B, H..., N, D]``, ``k [T, B, H..., M, D]``, ``v [T, B, H..., M, Dv]`` -> spikes ``[T, B, H..., N, Dv]``."""
        _check_qkv("StochasticAttention", q, k, v, time_major=True)
        o = self.op
        mx = (1 << o.bits) - 1
        steps = q.shape[0]
        nqk, nav = o.norms(q.shape[-1], k.shape[-2])
        c1 = q @ _t(k)  # exact integers in float32
        per1 = tuple(c1.shape[2:])
        per2 = (*c1.shape[2:-1], v.shape[-1])
        r1 = r2 = None
        if self.rng == "lfsr":
            s1, s2 = self._lfsr(steps, int(np.prod(per1)), int(np.prod(per2)))
            r1, r2 = s1.reshape(steps, 1, *per1), s2.reshape(steps, 1, *per2)
        with torch.no_grad():
            p1 = torch.clamp(round_div(c1.detach().round().to(torch.int64), mx, nqk), max=mx)
            a_bits = self._sample(p1, r1)
        a = _StraightThrough.apply(a_bits, torch.clamp(c1 / nqk, 0, 1))
        c2 = a @ v
        with torch.no_grad():
            p2 = torch.clamp(round_div(c2.detach().round().to(torch.int64), mx, nav), max=mx)
            o_bits = self._sample(p2, r2)
        return _StraightThrough.apply(o_bits, torch.clamp(c2 / nav, 0, 1))


class LinearAttention(nn.Module):
    """Causal linear attention / spiking SSM over the time (token) axis (paper eqs. 16-20).

    Inputs ``q``, ``k`` of shape ``[T, B, H..., Dk]`` and ``v`` of shape
    ``[T, B, H..., Dv]``; state ``S`` of shape ``[B, H..., Dv, Dk]``, zero before
    the first step::

        S_t = a * S_{t-1} + b * v_t k_t^T      # per value channel c: a LIF without reset
        y_t = S_t q_t                            # [B, H..., Dv]

    ``a = b = 1`` is causal linear attention ``y_t = sum_{s <= t} v_s (k_s . q_t)``.
    ``a`` is a scalar or one decay per value channel (``(Dv,)``), in [0, 1].
    The float arithmetic is the float engine's (`LinearAttentionFloat`), step by
    step with the same tensor shapes, so results agree bit for bit; gradients
    flow through q, k, v and the learned ``a``/``b`` (``learn=("a", "b")``).
    """

    def __init__(self, a: Any = 1.0, b: float = 1.0, learn: Sequence[str] = ()) -> None:
        super().__init__()
        unknown = set(learn) - {"a", "b"}
        if unknown:
            raise ValueError(f"learn: unknown parameters {sorted(unknown)}; choose from ['a', 'b']")
        for name, value in (("a", a), ("b", b)):
            t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
            if name in learn:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)
        if self.b.dim() != 0:
            raise ValueError(f"b must be a scalar, got shape {list(self.b.shape)}")
        self.to_op()  # validate with the IR's checks

    def to_op(self) -> LinearAttentionOp:
        """The IR op with this module's current parameters."""
        return LinearAttentionOp(a=self.a.detach().cpu().numpy(), b=float(self.b.detach()))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k [T, B, H..., Dk]``, ``v [T, B, H..., Dv]`` -> ``y [T, B, H..., Dv]``."""
        if q.dim() < 3 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
            raise ValueError(f"npuc.nn.LinearAttention takes q, k [T, B, ..., Dk] and v [T, B, ..., Dv], got "
                             f"{list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
        a = self.a.reshape(-1, 1) if self.a.dim() == 1 else self.a
        s = None
        out = []
        for t in range(q.shape[0]):  # the operation order of LinearAttentionFloat.step
            outer = v[t].unsqueeze(-1) * k[t].unsqueeze(-2)
            s = self.b * outer if s is None else a * s + self.b * outer
            out.append((s @ q[t].unsqueeze(-1)).squeeze(-1))
        return torch.stack(out)


class SpikingSSM(nn.Module):
    """Diagonal spiking SSM: a linear projection into LIF neurons without reset, read through
    their membrane (paper V-C; the form that maps to Loihi 2 as Dense -> LIF)::

        h_t = a * h_{t-1} + W x_t + c          # per state channel: LIF with alpha = a, no reset
        y_t = h_t

    ``x``: ``[T, B, ..., in_features]`` -> ``y``: ``[T, B, ..., state_features]``.
    This is eq. (16) with the key-value product ``b v_t k_t^T`` replaced by a
    learned projection ``W x_t``; it is exactly ``nn.Linear`` followed by
    ``npuc.nn.LIF(alpha=a, reset="none", output="v")``, and compiles to those
    two IR nodes. The membrane can only leave the network as an output (Loihi 2
    and the FPGA route spikes, not membranes, between layers). For ``--target
    loihi2`` the neuron's threshold is set above the largest membrane the layer
    can reach, so it provably never fires (see the legalize pass).
    """

    def __init__(self, in_features: int, state_features: int, a: Any = 0.9, bias: bool = True,
                 learn_a: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, state_features, bias=bias)
        self.state = LIF(alpha=a, threshold=1.0, reset="none", output="v", learn=("alpha",) if learn_a else ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, ..., in_features]`` -> membranes ``[T, B, ..., state_features]``."""
        return self.state(self.proj(x))
