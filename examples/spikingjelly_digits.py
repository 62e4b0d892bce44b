"""SpikingJelly example: a multi-step LIFNode network on [T, B, ...], compiled for Loihi 2 and FPGA.

    python examples/spikingjelly_digits.py [--quick]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from _common import run_example
from spikingjelly.activation_based import functional, layer, neuron

STEPS = 8


def make_net() -> nn.Module:
    net = nn.Sequential(
        layer.Linear(64, 64),
        neuron.LIFNode(tau=2.0),
        layer.Linear(64, 10),
        neuron.LIFNode(tau=2.0),
    )
    functional.set_step_mode(net, "m")  # input [T, B, 64], output [T, B, 10]
    return net


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(model)
    return model(x.unsqueeze(0).repeat(STEPS, 1, 1)).sum(0)


if __name__ == "__main__":
    # the model takes [T, B, 64]
    run_example(__file__, make_net, forward, to_input=lambda x: np.repeat(x[None], STEPS, 0),
                before_api=functional.reset_net, api_target="loihi2", api_engine="lava")
