"""npuc.nn example: a CUBA LIF network with a Bernoulli input encoder, for Loihi 2 and FPGA.

    python examples/npuc_nn_digits.py [--quick]
"""

from __future__ import annotations

import torch.nn as nn
from _common import run_example

from npuc.nn import LIF, BernoulliEncoder

STEPS = 12


class Net(nn.Module):
    """x [B, 64] in [0, 1] -> Bernoulli spikes (LFSR) -> CUBA LIF 64 -> LIF 10 -> spike counts."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = BernoulliEncoder(STEPS, bits=12, seed=7)
        self.fc1 = nn.Linear(64, 64, bias=False)
        self.lif1 = LIF(alpha=0.9, alpha_i=0.5, threshold=1.0, reset="value")
        self.fc2 = nn.Linear(64, 10, bias=False)
        self.lif2 = LIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(self.encode(x))))).sum(0)


def make_net() -> Net:
    return Net()


if __name__ == "__main__":
    run_example(__file__, make_net, lambda m, x: m(x), api_target=["loihi2", "fpga"], api_engine="lava")
