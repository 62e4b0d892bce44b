"""Float and integer kernels of the inter-token NPEs (`npuc.ir.ops.attention`).

Coincidence attention and stochastic attention compute with integers in both
engines (the float engine only converts at the ends), so float and integer
results agree bit for bit; linear attention keeps a real-valued state in the
float engine and a profile-governed integer state in the integer engine.
"""

from __future__ import annotations

import numpy as np
import torch

from ..ir.ops import LinearAttention, SpikeAttention, StochasticAttention
from . import lfsr
from .engine import Context, StatefulKernel
from .float_kernels import FLOAT
from .int_kernels import INT, decay, overflow

_EXACT = 2.0**53


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-2, -1)


# -- coincidence attention --------------------------------------------------------------


@FLOAT.stateless(SpikeAttention)
def spike_attention_float(op: SpikeAttention, xs, ctx: Context | None) -> torch.Tensor:
    return spike_attention(op, *xs)


def spike_attention(op: SpikeAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The coincidence attention in float32, in the one operation order both the float engine and
    `npuc.nn.SpikingSelfAttention` (training) use."""
    if op.order == "qk_v":
        s = q @ _t(k)
        if op.a:
            s = s + op.a * ((1 - q) @ _t(1 - k))
        return (s @ v) * op.scale
    y = q @ (_t(k) @ v)
    if op.a:
        y = y + op.a * ((1 - q) @ (_t(1 - k) @ v))
    return y * op.scale


@INT.stateless(SpikeAttention)
def spike_attention_int(op: SpikeAttention, xs, ctx: Context) -> torch.Tensor:
    if op.q is None:
        raise ValueError(f"node '{ctx.node}' (SpikeAttention) has no integer parameters: run the quantize pass")
    q, k, v = (x.to(torch.float64) for x in xs)
    s = (q @ _t(k)) * 2.0**op.q.a_frac
    if op.q.a_int:
        s = s + op.q.a_int * ((1 - q) @ _t(1 - k))
    y = s @ v
    if (float(y.abs().max()) if y.numel() else 0.0) * abs(op.q.mult) >= _EXACT:
        raise ValueError(f"node '{ctx.node}': attention sums exceed exact float64 range")
    return (y.round().to(torch.int64) * op.q.mult) >> op.q.shift


# -- stochastic-computing attention ---------------------------------------------------------


def round_div(num: torch.Tensor, m: int, den: int) -> torch.Tensor:
    """``floor(num * m / den + 1/2)`` in exact integer arithmetic."""
    return torch.div(2 * num * m + den, 2 * den, rounding_mode="floor")


class StochasticAttentionKernel(StatefulKernel):
    """Both engines: the integer procedure of `StochasticAttention` with exact LFSR streams."""

    float_out: bool

    def init(self, op: StochasticAttention, shape, ctx: Context) -> dict:
        return {"streams": None}

    def step(self, op: StochasticAttention, st: dict, xs, t: int, ctx: Context) -> dict:
        q, k, v = (x.round().to(torch.int64) for x in xs)
        m = (1 << op.bits) - 1
        c1 = (q.to(torch.float64) @ _t(k).to(torch.float64)).round().to(torch.int64)
        nqk, nav = op.norms(q.shape[-1], k.shape[-2])
        if st["streams"] is None:  # one stream per LFSR, element-fastest, restarted per sample
            n1, n2 = int(np.prod(c1.shape[1:])), int(np.prod((*c1.shape[1:-1], v.shape[-1])))
            st["streams"] = (
                torch.from_numpy(lfsr.uniform_block(op.bits, op.seed, ctx.steps, n1, lfsr.primitive_taps(op.bits, 0)).astype(np.int64)),
                torch.from_numpy(lfsr.uniform_block(op.bits, op.seed2, ctx.steps, n2, lfsr.primitive_taps(op.bits, 1)).astype(np.int64)),
            )
        r1, r2 = st["streams"]
        p1 = torch.clamp(round_div(c1, m, nqk), max=m)
        a = (r1[t].reshape(c1.shape[1:]) <= p1).to(torch.int64)
        c2 = (a.to(torch.float64) @ v.to(torch.float64)).round().to(torch.int64)
        p2 = torch.clamp(round_div(c2, m, nav), max=m)
        o = (r2[t].reshape(c2.shape[1:]) <= p2)
        return {"out": o.to(torch.float32 if self.float_out else torch.int64)}


@FLOAT.stateful(StochasticAttention)
class StochasticAttentionFloat(StochasticAttentionKernel):
    float_out = True


@INT.stateful(StochasticAttention)
class StochasticAttentionInt(StochasticAttentionKernel):
    float_out = False


# -- linear attention / spiking SSM -------------------------------------------------------------


@FLOAT.stateful(LinearAttention)
class LinearAttentionFloat(StatefulKernel):
    """``S = a S + b v k^T``; ``y = S q`` in float32."""

    def init(self, op: LinearAttention, shape, ctx: Context) -> dict:
        return {"S": None, "a": torch.from_numpy(np.array(op.decay(shape[-1]), dtype=np.float32))}

    def step(self, op: LinearAttention, st: dict, xs, t: int, ctx: Context) -> dict:
        q, k, v = xs
        outer = v.unsqueeze(-1) * k.unsqueeze(-2)
        s = op.b * outer if st["S"] is None else st["a"] * st["S"] + op.b * outer
        st["S"] = s
        return {"out": (s @ q.unsqueeze(-1)).squeeze(-1)}


@INT.stateful(LinearAttention)
class LinearAttentionInt(StatefulKernel):
    """Integer state with the profile's decay rounding and membrane overflow rules."""

    def init(self, op: LinearAttention, shape, ctx: Context) -> dict:
        if op.q is None:
            raise ValueError(f"node '{ctx.node}' (LinearAttention) has no integer parameters: run the quantize pass")
        da = np.asarray(op.q.da)
        mult = torch.from_numpy(np.array(ctx.profile.decay_unity - (da.reshape(-1, 1) if da.ndim == 1 else da), dtype=np.int64))
        return {"S": None, "mult": mult}

    def step(self, op: LinearAttention, st: dict, xs, t: int, ctx: Context) -> dict:
        prof = ctx.profile
        q, k, v = xs
        outer = v.unsqueeze(-1) * k.unsqueeze(-2) * op.q.b_int
        s = outer if st["S"] is None else decay(st["S"], st["mult"], prof) + outer
        s = overflow(s, prof.v_bits, prof.v_overflow, ctx, "state_overflow")
        st["S"] = s
        y = (s.to(torch.float64) @ q.to(torch.float64).unsqueeze(-1)).squeeze(-1)
        if (float(y.abs().max()) if y.numel() else 0.0) * abs(op.q.mult) >= _EXACT:
            raise ValueError(f"node '{ctx.node}': linear attention readout exceeds exact float64 range")
        return {"out": (y.round().to(torch.int64) * op.q.mult) >> op.q.shift}
