"""The demo's models, written with npuc.nn like any user model.

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

from ..frontends.nn import LIF, CurrentEncoder

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
