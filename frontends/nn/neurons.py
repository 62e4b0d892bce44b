"""npuc's trainable neurons: the IR's `LIF` as a PyTorch module.

`LIF` and `IF` take a time-major ``[T, B, ...]`` tensor and return the spikes
(or the membrane, ``output="v"``) as ``[T, B, ...]``. Their forward evaluates
the IR's canonical ("npuc") float form in the same float32 operation order as
the float engine (`npuc.sim.float_kernels.LIFFloat`), so a trained model and
its compiled graph agree bit for bit; the backward pass uses a surrogate
gradient (`npuc.nn.surrogate`). Every `LIF` option of the IR is available
(reset mode and timing, ``gt``/``ge``, binary / ternary / multilevel / bernoulli
spikes, CUBA current, ``v_min``); bernoulli spikes draw from the same LFSR
stream as the engine and the hardware (`npuc.sim.lfsr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ...ir.ops import LIF as LIFOp
from ...sim import lfsr
from .surrogate import ATan, Surrogate, spike

_PARAMS = ("alpha", "threshold", "gain", "bias", "alpha_i", "threshold_lo", "v_min")


class LIF(nn.Module):
    """Generalised leaky integrate-and-fire neurons over time (see `npuc.ir.LIF`)::

        i_t = alpha_i * i_{t-1} + x_t            (if alpha_i is given; else i_t = x_t)
        h_t = alpha * v_{t-1} + gain * i_t + bias
        s_t = spike(h_t)
        v_t = reset(h_t, s_t)

    Args:
        alpha, threshold, gain, bias, alpha_i, threshold_lo, v_min: scalars or
            per-neuron tensors (broadcastable to the per-sample shape).
        reset: ``"subtract"``, ``"value"`` or ``"none"``; ``reset_value`` for ``"value"``.
        reset_timing: ``"same"``, ``"delayed"`` or ``"delayed_charge"`` (see `npuc.ir.LIF`).
        compare: ``"gt"`` or ``"ge"``.
        spike: ``"binary"``, ``"ternary"`` (needs ``threshold_lo``), ``"multilevel"``
            (optional ``levels``) or ``"bernoulli"`` (LFSR of width ``bits`` from ``seed``).
        v_init: initial membrane.
        learn: names of the parameters to train (e.g. ``("alpha", "threshold")``).
        surrogate: surrogate gradient of the spike function.
        output: ``"spikes"`` or ``"v"`` (membrane readout).
    """

    def __init__(
        self,
        alpha: Any = 0.9,
        threshold: Any = 1.0,
        gain: Any = 1.0,
        bias: Any = 0.0,
        alpha_i: Any = None,
        threshold_lo: Any = None,
        reset: str = "subtract",
        reset_value: float = 0.0,
        reset_timing: str = "same",
        compare: str = "gt",
        spike: str = "binary",
        levels: int | None = None,
        bits: int = 16,
        seed: int = 1,
        v_min: Any = None,
        v_init: float = 0.0,
        learn: Sequence[str] = (),
        surrogate: Surrogate | None = None,
        output: str = "spikes",
    ) -> None:
        super().__init__()
        values = dict(alpha=alpha, threshold=threshold, gain=gain, bias=bias, alpha_i=alpha_i,
                      threshold_lo=threshold_lo, v_min=v_min)
        unknown = set(learn) - set(_PARAMS)
        if unknown:
            raise ValueError(f"learn: unknown parameters {sorted(unknown)}; choose from {list(_PARAMS)}")
        for k in learn:
            if values[k] is None:
                raise ValueError(f"learn: '{k}' is not set")
        if output not in ("spikes", "v"):
            raise ValueError(f"output: {output!r} is not 'spikes' or 'v'")
        self.options = dict(reset=reset, reset_value=float(reset_value), reset_timing=reset_timing, compare=compare,
                            spike=spike, levels=levels, bits=bits, seed=seed, v_init=float(v_init))
        for k, v in values.items():
            if v is None:
                setattr(self, k, None)
                continue
            t = torch.as_tensor(v, dtype=torch.float32).detach().clone()
            if k in learn:
                setattr(self, k, nn.Parameter(t))
            else:
                self.register_buffer(k, t)
        self.surrogate = surrogate if surrogate is not None else ATan()
        self.output = output
        self.to_op()  # validate the options with the IR's own checks

    def to_op(self) -> LIFOp:
        """The IR op with this module's current parameters (canonical form)."""
        arrays = {k: getattr(self, k).detach().cpu().numpy() for k in _PARAMS if getattr(self, k) is not None}
        return LIFOp(**arrays, **self.options)

    def extra_repr(self) -> str:
        o = self.options
        return f"reset={o['reset']}, timing={o['reset_timing']}, compare={o['compare']}, spike={o['spike']}"

    def _fire(self, h: torch.Tensor, theta: torch.Tensor, theta_lo: torch.Tensor | None, r: torch.Tensor | None) -> torch.Tensor:
        o = self.options
        kind = o["spike"]
        with torch.no_grad():
            if kind == "binary":
                out = (h > theta if o["compare"] == "gt" else h >= theta).to(h.dtype)
            elif kind == "ternary":
                if o["compare"] == "gt":
                    pos, neg = (h > theta).to(h.dtype), (h < theta_lo).to(h.dtype)
                else:
                    pos, neg = (h >= theta).to(h.dtype), (h <= theta_lo).to(h.dtype)
            elif kind == "multilevel":
                out = torch.clamp(torch.floor(h / theta), min=0)
                if o["levels"] is not None:
                    out = torch.clamp(out, max=o["levels"] - 1)
            else:
                m = float((1 << o["bits"]) - 1)
                p = torch.sigmoid(h - theta).to(torch.float64)
                out = (r <= torch.floor(p * m + 0.5)).to(h.dtype)
        if kind == "binary":
            return spike(h - theta, out, self.surrogate)
        if kind == "ternary":
            return spike(h - theta, pos, self.surrogate) - spike(theta_lo - h, neg, self.surrogate)
        if kind == "multilevel":
            q = h / theta
            return out + (q - q.detach()) * (out > 0).to(h.dtype)  # straight-through; forward exactly `out`
        p = torch.sigmoid(h - theta)
        return out + (p - p.detach())

    @staticmethod
    def _amount(kind: str, s: torch.Tensor, theta: torch.Tensor, theta_lo: torch.Tensor | None) -> torch.Tensor:
        if kind == "ternary":
            return torch.where(s > 0, theta, torch.where(s < 0, theta_lo, torch.zeros_like(theta))) * (s != 0)
        return s * theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[T, B, ...]`` float32 input current; returns ``[T, B, ...]``."""
        if x.dim() < 2:
            raise ValueError(f"npuc.nn.{type(self).__name__} takes [T, B, ...], got shape {list(x.shape)}")
        o = self.options
        steps = x.shape[0]
        z = torch.zeros_like(x[0])
        v = torch.full_like(z, o["v_init"])
        i = z.clone()
        s_prev = z.clone()
        theta, theta_lo = self.threshold, self.threshold_lo
        r_all = None
        if o["spike"] == "bernoulli":
            n = int(np.prod(x.shape[2:]))
            r_all = torch.from_numpy(lfsr.uniform_block(o["bits"], o["seed"], steps, n).astype(np.int64))
        timing, reset, kind = o["reset_timing"], o["reset"], o["spike"]
        out = []
        for t in range(steps):
            xt = x[t]
            i = self.alpha_i * i + xt if self.alpha_i is not None else xt
            if timing == "delayed" and reset == "value":
                v = torch.where(s_prev.detach() != 0, torch.full_like(v, o["reset_value"]), v)
            h = self.alpha * v + self.gain * i + self.bias
            if timing != "same" and reset == "subtract":
                h = h - self._amount(kind, s_prev.detach(), theta, theta_lo)
            if timing == "delayed_charge" and reset == "value":
                h = torch.where(s_prev.detach() != 0, torch.full_like(h, o["reset_value"]), h)
            r = r_all[t].reshape(h.shape[1:]).to(torch.float64) if r_all is not None else None
            s = self._fire(h, theta, theta_lo, r)
            if timing == "same" and reset == "subtract":
                v = h - self._amount(kind, s.detach(), theta, theta_lo)
            elif timing == "same" and reset == "value":
                v = torch.where(s.detach() != 0, torch.full_like(h, o["reset_value"]), h)
            else:
                v = h
            if self.v_min is not None:
                v = torch.maximum(v, self.v_min)
            s_prev = s
            out.append(s if self.output == "spikes" else v)
        return torch.stack(out)


class IF(LIF):
    """Integrate-and-fire neurons: `LIF` with ``alpha = 1`` (no leak, not learnable)."""

    def __init__(self, threshold: Any = 1.0, **kwargs: Any) -> None:
        if "alpha" in kwargs or "alpha" in kwargs.get("learn", ()):
            raise ValueError("IF has no leak: alpha is fixed to 1")
        super().__init__(alpha=1.0, threshold=threshold, **kwargs)
