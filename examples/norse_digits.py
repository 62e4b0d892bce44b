"""norse example: LIFBoxCell layers stepped with explicit state, compiled for Loihi 2 and FPGA.

    python examples/norse_digits.py [--quick]
"""

from __future__ import annotations

import norse.torch as norse
import torch
import torch.nn as nn
from _common import run_example

STEPS = 10


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.cell1 = norse.LIFBoxCell()
        self.fc2 = nn.Linear(64, 10)
        self.cell2 = norse.LIFBoxCell()

    def forward(self, x):  # x: [B, 64], constant over the steps
        s1 = s2 = None
        spikes = []
        for _ in range(STEPS):
            z1, s1 = self.cell1(10 * self.fc1(x), s1)  # norse's default dt * tau_mem_inv = 0.1
            z2, s2 = self.cell2(10 * self.fc2(z1), s2)
            spikes.append(z2)
        return torch.stack(spikes).sum(0)  # spike counts [B, 10]


def make_net() -> Net:
    return Net()


if __name__ == "__main__":
    run_example(__file__, make_net, lambda m, x: m(x))
