"""snntorch example: a Leaky MLP with an explicit time loop, compiled for Loihi 2 and FPGA.

    python examples/snntorch_digits.py [--quick]

Loihi 2's LIF resets to zero, so the model uses ``reset_mechanism="zero"``
(snntorch's default subtract reset compiles for the FPGA, or for Loihi 2 with
``--allow-approx``).
"""

from __future__ import annotations

import snntorch as snn
import torch
import torch.nn as nn
from _common import run_example

STEPS = 10


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc2 = nn.Linear(64, 10)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):  # x: [B, 64], the same current at every step
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        spikes = []
        for _ in range(STEPS):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
        return torch.stack(spikes)  # [T, B, 10]


def make_net() -> Net:
    return Net()


if __name__ == "__main__":
    run_example(__file__, make_net, lambda m, x: m(x).sum(0), simulate=True)
