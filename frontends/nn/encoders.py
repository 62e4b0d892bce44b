"""Input encoders: a static input ``[B, ...]`` -> a spike train ``[T, B, ...]``.

Each encoder produces exactly the spikes of the IR `Input` encoding of the same
name (`npuc.ir.values.Encoding`, computed by `npuc.sim.encoding`), so placing
one first in a model makes it the compiled graph's input encoding: the user
passes the static values, the engines and the hardware encode them.
Encoders have no gradient (they act on data).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...ir.values import Encoding
from ...sim.encoding import encode_spikes


class _Encoder(nn.Module):
    kind = ""

    def __init__(self, steps: int, bits: int = 16, seed: int = 1) -> None:
        super().__init__()
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.steps = steps
        self.encoding = Encoding(self.kind, bits=bits, seed=seed)

    def extra_repr(self) -> str:
        return f"steps={self.steps}, {self.encoding.summary()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, ...]`` values (clipped to [0, 1]); returns ``[T, B, ...]`` float32 spikes."""
        s = encode_spikes(self.encoding, x.detach().unsqueeze(0), self.steps)
        return torch.from_numpy(s).to(torch.float32)


class RateEncoder(_Encoder):
    """Unary rate code: ``k = round(x * T)`` spikes, in the first ``k`` steps
    (quantized to ``bits``; see `Encoding`)."""

    kind = "rate"


class BernoulliEncoder(_Encoder):
    """Stochastic rate code: ``s_t = 1[r_t <= round(x * (2^bits - 1))]`` with the LFSR stream ``r``."""

    kind = "bernoulli"


class TimeCodeEncoder(_Encoder):
    """Positional code: the ``T``-bit binary expansion of ``x``, most significant bit first."""

    kind = "timecode"

    def __init__(self, steps: int) -> None:
        super().__init__(steps)


class LatencyEncoder(_Encoder):
    """Time-to-first-spike: one spike at ``t* = round((1 - x) * (T - 1))``."""

    kind = "latency"


class CurrentEncoder(nn.Module):
    """No encoding: the static input repeated as a current at every step
    (``[B, ...] -> [T, B, ...]``, contiguous like the engine's time-folded calls)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.steps = steps
        self.encoding = Encoding("current")

    def extra_repr(self) -> str:
        return f"steps={self.steps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).repeat((self.steps,) + (1,) * x.dim())
