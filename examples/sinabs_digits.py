"""sinabs example: IAF neurons with multi-spike (graded) outputs over [B, T, ...], for the FPGA.

    python examples/sinabs_digits.py [--quick]

sinabs' default MultiSpike emits up to several spikes per step (graded
spikes): the FPGA target implements them; Loihi 2's LIF has no multi-level
output, so this example compiles for ``fpga`` only.
"""

from __future__ import annotations

import numpy as np
import sinabs.layers as sl
import torch
import torch.nn as nn
from _common import run_example

STEPS = 8


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), sl.IAF(), nn.Linear(64, 10), sl.IAF())  # [B, T, 64] -> [B, T, 10]


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for m in model.modules():
        if isinstance(m, sl.StatefulLayer):
            m.reset_states()
    return model(x.unsqueeze(1).repeat(1, STEPS, 1)).sum(1)


if __name__ == "__main__":
    # the model takes [B, T, 64]; sinabs keeps its neuron state in the state_dict, not a parameter
    run_example(__file__, make_net, forward, targets=("fpga",), lr=2e-3,
                to_input=lambda x: np.repeat(x[:, None], STEPS, 1),
                state_dict=lambda m: {k: v for k, v in m.state_dict().items() if not k.endswith(("v_mem", "i_syn"))},
                before_api=lambda m: forward(m, torch.zeros(1, 64)))
