"""Spikformer-style models on scikit-learn's 8x8 digits as 8 tokens (rows) of 8
features (pixels / 16), presented at every one of ``T`` steps.

* `Spikformer`: written the way users write it: SpikingJelly multi-step neurons,
  ``nn.Linear`` projections and plain matmuls for the attention (no npuc code in
  the attention).
* `SnnTorchAttention`: a one-head block with snntorch ``Leaky`` neurons in a user
  time loop (attention on one step's ``[B, N, D]`` spikes).
* `BadAttention`: attention-like code npuc must refuse, one variant per ``kind``.
* `NnSpikformer`: the same architecture from `npuc.nn` modules, with the attention
  chosen among AND / XNOR / a-XNOR coincidence scores and stochastic computing
  (used by ``bench/attention_bench.py`` and the attention tests).

Both read out by integrating the class currents in an `npuc.nn.LIF` without reset,
read through its membrane (the diagonal SSM form), averaged over time.
"""

from __future__ import annotations

import numpy as np
import snntorch as snn
import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional, neuron, surrogate

import npuc.nn as nnn

T = 4
FORMS = ("qk_v", "q_kv", "pre_scale")


def _lif(v_threshold: float = 1.0) -> neuron.LIFNode:
    return neuron.LIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, step_mode="m",
                          surrogate_function=surrogate.ATan())


class SSA(nn.Module):
    """Spiking self-attention (Spikformer): Q, K, V = LIF(Linear(x)) split into heads;
    ``LIF((Q K^T) V * s)``, written in one of three equivalent forms (``s = 0.25``: with
    16 features per head and 8 tokens, Spikformer's 0.125 leaves the attention LIF silent)."""

    def __init__(self, dim: int, heads: int, form: str = "qk_v", scale: float = 0.25) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form {form!r} not in {FORMS}")
        self.heads, self.form, self.scale = heads, form, scale
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = _lif(), _lif(), _lif()
        self.attn_lif = _lif(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, C]
        t, b, n, c = x.shape
        h = self.heads
        q = self.q_lif(self.q(x)).reshape(t, b, n, h, c // h).permute(0, 1, 3, 2, 4)
        k = self.k_lif(self.k(x)).reshape(t, b, n, h, c // h).permute(0, 1, 3, 2, 4)
        v = self.v_lif(self.v(x)).reshape(t, b, n, h, c // h).permute(0, 1, 3, 2, 4)
        if self.form == "qk_v":
            y = q @ k.transpose(-2, -1) @ v * self.scale
        elif self.form == "q_kv":
            y = q @ (k.transpose(-2, -1) @ v) * self.scale
        else:
            y = (q @ k.transpose(-2, -1)) * self.scale @ v
        y = y.transpose(2, 3).reshape(t, b, n, c)
        return self.attn_lif(y)


class Spikformer(nn.Module):
    """Embedding LIF -> SSA -> projection LIF -> flatten tokens -> class currents -> integrator."""

    def __init__(self, tokens: int = 8, features: int = 8, dim: int = 32, heads: int = 2, classes: int = 10,
                 form: str = "qk_v") -> None:
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.embed_lif = _lif()
        self.ssa = SSA(dim, heads, form)
        self.proj = nn.Linear(dim, dim)
        self.proj_lif = _lif()
        self.head = nn.Linear(tokens * dim, classes)
        self.readout = nnn.LIF(alpha=1.0, reset="none", output="v")
        with torch.no_grad():  # no batch norm: larger initial weights so that every layer spikes
            for lin, gain in ((self.embed, 5.0), (self.ssa.q, 5.0), (self.ssa.k, 5.0), (self.ssa.v, 5.0),
                              (self.proj, 8.0)):
                lin.weight.mul_(gain)
                if lin.bias is not None:
                    lin.bias.mul_(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, F] static
        x = x.unsqueeze(0).repeat(T, 1, 1, 1)
        s = self.embed_lif(self.embed(x))
        a = self.ssa(s)
        p = self.proj_lif(self.proj(a))
        return self.readout(self.head(p.flatten(2))).mean(0)


class SnnTorchAttention(nn.Module):
    """Q, K, V from snntorch ``Leaky`` neurons in a loop over ``x[t]`` (``[T, B, N, F]``);
    ``q @ (k.transpose(-2, -1) @ v) * 0.125`` into an output ``Leaky``."""

    def __init__(self, tokens: int = 6, features: int = 10, dim: int = 12) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(features, dim) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = (snn.Leaky(beta=0.8, threshold=0.5) for _ in range(3))
        self.out_lif = snn.Leaky(beta=0.9, threshold=1.0)

    def forward(self, x: torch.Tensor):
        mq, mk, mv, mo = (m.reset_mem() for m in (self.q_lif, self.k_lif, self.v_lif, self.out_lif))
        spikes, mems = [], []
        for t in range(x.shape[0]):
            q, mq = self.q_lif(self.q(x[t]), mq)
            k, mk = self.k_lif(self.k(x[t]), mk)
            v, mv = self.v_lif(self.v(x[t]), mv)
            s, mo = self.out_lif(q @ (k.transpose(-2, -1) @ v) * 0.125, mo)
            spikes.append(s)
            mems.append(mo)
        return torch.stack(spikes), torch.stack(mems)


BAD_KINDS = ("softmax", "softmax_fn", "current_q", "scale_before_v", "inexact_scale", "scores_out", "scores_to_lif", "scores_add",
             "two_products", "squared_scores", "graded_k", "index_scores")


class BadAttention(nn.Module):
    """Attention-like code that is not a pattern npuc compiles; ``kind`` selects the variant."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.q, self.k, self.v = (nn.Linear(8, 8, bias=False) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif, self.out_lif = _lif(), _lif(), _lif(), _lif(0.5)
        with torch.no_grad():
            for lin in (self.q, self.k, self.v):
                lin.weight.mul_(6.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, 8]
        kind = self.kind
        q = self.q(x) if kind == "current_q" else self.q_lif(self.q(x))
        k = self.k_lif(self.k(x)) * 2.0 if kind == "graded_k" else self.k_lif(self.k(x))
        v = self.v_lif(self.v(x))
        kt = k.transpose(-2, -1)
        if kind == "softmax":
            y = (q @ kt).softmax(-1) @ v
        elif kind == "softmax_fn":
            y = F.softmax(q @ kt * 0.125, dim=-1) @ v
        elif kind == "scale_before_v":
            y = (q @ kt) * 0.1 @ v
        elif kind == "inexact_scale":  # float32(0.1): representable, but its products are rounded
            y = (q @ kt) * float(np.float32(0.1)) @ v
        elif kind == "scores_out":
            return q @ kt
        elif kind == "scores_to_lif":
            return self.out_lif(q @ kt)
        elif kind == "scores_add":
            y = (q @ kt + k @ q.transpose(-2, -1)) @ v
        elif kind == "two_products":
            y = (q @ kt) @ (k @ kt) @ v
        elif kind == "squared_scores":
            y = (q @ kt) * (q @ kt) @ v
        elif kind == "index_scores":
            y = (q @ kt)[..., :4] @ v[..., :4, :]
        else:
            y = q @ kt @ v * 0.125
        return self.out_lif(y)


def _nlif(threshold: float = 1.0) -> nnn.LIF:
    """SpikingJelly's ``LIFNode(tau=2)`` in npuc.nn form: ``h = v/2 + x/2``, fire ``h >= theta``, reset to 0."""
    return nnn.LIF(alpha=0.5, gain=0.5, threshold=threshold, reset="value", compare="ge", surrogate=nnn.ATan())


ATTENTIONS = {
    # scale chosen per score so that the attention LIF sees similar currents at ~20% input rates
    "and": {"score": "and", "scale": 0.25},
    "axnor": {"score": "axnor", "a": 0.25, "scale": 0.0625},
    "xnor": {"score": "xnor", "scale": 0.015625},
    "sc": {"bits": 16, "seed": 0x2B1D, "seed2": 0x71C3, "norm_qk": 4, "norm_av": 2},
}
"""The attention variants of `NnSpikformer` and their parameters."""


class NnSpikformer(nn.Module):
    """`Spikformer` from npuc.nn modules; ``attention`` is a key of `ATTENTIONS`.

    Coincidence variants: ``LIF(SpikingSelfAttention(Q, K, V))``; ``"sc"``:
    `npuc.nn.StochasticAttention`, whose output is already spikes (no attention
    LIF); it trains with ``rng="torch"`` and is switched to the LFSR streams
    (``use_lfsr()``) for evaluation and compilation.
    """

    def __init__(self, attention: str = "and", tokens: int = 8, features: int = 8, dim: int = 32, heads: int = 2,
                 classes: int = 10) -> None:
        super().__init__()
        cfg = ATTENTIONS[attention]
        self.heads = heads
        self.embed = nn.Linear(features, dim)
        self.embed_lif = _nlif()
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = _nlif(), _nlif(), _nlif()
        if attention == "sc":
            self.attn = nnn.StochasticAttention(**cfg, rng="torch")
            self.attn_lif = None
        else:
            self.attn = nnn.SpikingSelfAttention(**cfg)
            self.attn_lif = _nlif(0.5)
        self.proj = nn.Linear(dim, dim)
        self.proj_lif = _nlif()
        self.head = nn.Linear(tokens * dim, classes)
        self.readout = nnn.LIF(alpha=1.0, reset="none", output="v")
        with torch.no_grad():
            for lin, gain in ((self.embed, 5.0), (self.q, 5.0), (self.k, 5.0), (self.v, 5.0), (self.proj, 8.0)):
                lin.weight.mul_(gain)
                if lin.bias is not None:
                    lin.bias.mul_(gain)

    def use_lfsr(self) -> NnSpikformer:
        """Switch a stochastic attention to the hardware LFSR streams."""
        if isinstance(self.attn, nnn.StochasticAttention):
            self.attn.rng = "lfsr"
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, F] static
        x = x.unsqueeze(0).repeat(T, 1, 1, 1)
        s = self.embed_lif(self.embed(x))
        t, b, n, c = s.shape
        h = self.heads
        q = self.q_lif(self.q(s)).reshape(t, b, n, h, c // h).permute(0, 1, 3, 2, 4)
        k = self.k_lif(self.k(s)).reshape(t, b, n, h, c // h).permute(0, 1, 3, 2, 4)
        v = self.v_lif(self.v(s)).reshape(t, b, n, h, c // h).permute(0, 1, 3, 2, 4)
        y = self.attn(q, k, v).transpose(2, 3).reshape(t, b, n, c)
        if self.attn_lif is not None:
            y = self.attn_lif(y)
        p = self.proj_lif(self.proj(y))
        return self.readout(self.head(p.flatten(2))).mean(0)


def spikformer() -> Spikformer:
    return Spikformer(form="qk_v")


def spikformer_q_kv() -> Spikformer:
    return Spikformer(form="q_kv")


def spikformer_pre_scale() -> Spikformer:
    return Spikformer(form="pre_scale")


def nn_spikformer_and() -> NnSpikformer:
    return NnSpikformer("and")


def nn_spikformer_sc() -> NnSpikformer:
    return NnSpikformer("sc").use_lfsr()


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits as ``[n, 8 tokens, 8 features]`` in [0, 1]: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n = 1400
    return x[:n], y[:n], x[n:], y[n:]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 8, lr: float = 1e-2, batch: int = 100,
          seed: int = 0) -> list[float]:
    """Adam on cross-entropy with surrogate gradients; SpikingJelly state reset after every batch.
    Runs on one thread (several times faster for this tiny model on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, x, y, epochs, lr, batch, seed)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch: int,
           seed: int) -> list[float]:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            functional.reset_net(model)
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(xt))
    model.eval()
    return losses


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's outputs (eval mode, reset state) as numpy."""
    model.eval()
    functional.reset_net(model)
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    functional.reset_net(model)
    return out
