"""The demo's models, written with npuc.nn like any user model.

`spikformer` is a Spikformer-style block on the same digits seen as 8 tokens
(rows) of 8 features: embedding LIF -> spiking Q, K, V -> coincidence (AND)
self-attention without softmax -> LIF -> projection LIF -> class integrator.
`examples/train_spikformer.py` trains it; it compiles for the FPGA and for
Loihi 2 (the attention as npuc's custom `NpucAttention` process).

`mlp` is a 64-64-10 LIF network for scikit-learn's 8x8 digits: the static
image is repeated as an input current for ``STEPS`` steps and the output is
the spike count per class. It resets to zero after a spike, so it maps to
Loihi 2 exactly as well as to the FPGA. `examples/train_digits.py` trains it
and writes the checkpoint shipped next to this file.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..frontends.nn import LIF, CurrentEncoder, SpikingSelfAttention

STEPS = 8
HELD_OUT = 297


def digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 digits scaled to [0, 1], split by a fixed permutation (seed 0):
    ``((x_train, y_train), (x_test, y_test))`` with ``HELD_OUT`` test samples."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    tr, te = perm[:-HELD_OUT], perm[-HELD_OUT:]
    return (x[tr], y[tr]), (x[te], y[te])


class DigitsMLP(nn.Module):
    """``x [B, 64]`` in [0, 1] -> spike counts ``[B, 10]``."""

    def __init__(self, hidden: int = 64, steps: int = STEPS) -> None:
        super().__init__()
        self.encode = CurrentEncoder(steps)
        self.fc1 = nn.Linear(64, hidden)
        self.lif1 = LIF(alpha=0.9, threshold=1.0, reset="value")
        self.fc2 = nn.Linear(hidden, 10)
        self.lif2 = LIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.lif1(self.fc1(self.encode(x)))
        return self.lif2(self.fc2(s1)).sum(0)


def mlp() -> DigitsMLP:
    """Factory used by ``npuc compile npuc.demo.models:mlp``."""
    return DigitsMLP()


SPIKFORMER_STEPS = 4


class DigitsSpikformer(nn.Module):
    """``x [B, 8, 8]`` (8 tokens of 8 features) in [0, 1] -> class scores ``[B, 10]``
    (the mean membrane of a non-resetting integrator over the time steps)."""

    def __init__(self, dim: int = 32, heads: int = 2, steps: int = SPIKFORMER_STEPS) -> None:
        super().__init__()
        self.steps, self.heads = steps, heads
        self.embed, self.embed_lif = nn.Linear(8, dim), LIF(alpha=0.5, threshold=1.0, reset="value")
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = (LIF(alpha=0.5, threshold=1.0, reset="value") for _ in range(3))
        self.attn = SpikingSelfAttention(score="and", scale=0.25)
        self.attn_lif = LIF(alpha=0.5, threshold=0.5, reset="value")
        self.proj, self.proj_lif = nn.Linear(dim, dim), LIF(alpha=0.5, threshold=1.0, reset="value")
        self.head = nn.Linear(8 * dim, 10)
        self.readout = LIF(alpha=1.0, reset="none", output="v")
        with torch.no_grad():  # start with active spiking layers (binary spikes need large enough currents)
            for lin, gain in ((self.embed, 5.0), (self.q, 5.0), (self.k, 5.0), (self.v, 5.0), (self.proj, 8.0)):
                lin.weight.mul_(gain)
                if lin.bias is not None:
                    lin.bias.mul_(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.embed_lif(self.embed(x.unsqueeze(0).repeat(self.steps, 1, 1, 1)))  # [T, B, N, C]
        t, b, n, c = s.shape
        heads = lambda y: y.reshape(t, b, n, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)  # noqa: E731
        y = self.attn(heads(self.q_lif(self.q(s))), heads(self.k_lif(self.k(s))), heads(self.v_lif(self.v(s))))
        y = self.attn_lif(y.transpose(2, 3).reshape(t, b, n, c))
        p = self.proj_lif(self.proj(y))
        return self.readout(self.head(p.flatten(2))).mean(0)


def spikformer() -> DigitsSpikformer:
    """Factory used by ``npuc compile npuc.demo.models:spikformer``."""
    return DigitsSpikformer()
