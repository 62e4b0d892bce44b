"""snntorch digits models that several test files train (8x8 digits, a constant input current
for ``STEPS`` steps, the output spike count as the logits)."""

from __future__ import annotations

import snntorch as snn
import torch
import torch.nn as nn

STEPS = 8


class SnnTorchMLP(nn.Module):
    """A digits MLP written with snntorch (reset to zero: netx's LIF resets to 0)."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 48, bias=bias), snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc2, self.lif2 = nn.Linear(48, 10, bias=bias), snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):
        m1, m2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for _ in range(STEPS):
            s1, m1 = self.lif1(self.fc1(x), m1)
            s2, m2 = self.lif2(self.fc2(s1), m2)
            out.append(s2)
        return torch.stack(out).sum(0)
