"""sinabs models for the frontend tests: layers over [B, T, ...] and Squeeze variants."""

from __future__ import annotations

import functools

import sinabs.layers as sl
import torch
import torch.nn as nn
from sinabs.activation import MaxSpike, MembraneReset, MembraneSubtract, SingleSpike

T = 10

LAYERS = {
    "iaf": lambda: sl.IAF(),
    "iaf_single_reset_minv": lambda: sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset(), min_v_mem=-0.5),
    "iaf_syn": lambda: sl.IAF(tau_syn=4.0, spike_threshold=torch.tensor(0.8)),
    "lif": lambda: sl.LIF(tau_mem=10.0),
    "lif_syn_vec": lambda: sl.LIF(tau_mem=torch.linspace(3.0, 15.0, 10), tau_syn=5.0, norm_input=False),
    "lif_maxspike_trained_alpha": lambda: sl.LIF(tau_mem=8.0, spike_fn=MaxSpike(2), train_alphas=True),
    "lif_reset_value": lambda: sl.LIF(tau_mem=8.0, reset_fn=MembraneReset(reset_value=0.2)),
    "iaf_subtract_value": lambda: sl.IAF(reset_fn=MembraneSubtract(subtract_value=0.5), spike_threshold=torch.tensor(0.7)),
    "explk": lambda: sl.ExpLeak(tau_mem=5.0),
}


NORM_INPUT_BOOST = {"lif": 6.0, "lif_maxspike_trained_alpha": 6.0, "lif_reset_value": 6.0}
"""sinabs LIF scales its input by (1 - alpha) (norm_input): more synaptic gain so it spikes."""


def dense(layer: str) -> nn.Module:
    """Linear -> layer (-> Linear -> ExpLeak readout for spiking layers). Linear(33 -> 10)
    on [B, T, 33] rounds differently per row position, so it checks batch-major folding."""
    if layer == "explk":
        return nn.Sequential(nn.Linear(33, 10), LAYERS[layer]())
    net = nn.Sequential(nn.Linear(33, 10), LAYERS[layer](), nn.Linear(10, 7), sl.ExpLeak(tau_mem=4.0))
    with torch.no_grad():
        net[0].weight.mul_(NORM_INPUT_BOOST.get(layer, 1.0))
    return net


for _name in LAYERS:
    globals()[f"dense_{_name}"] = functools.partial(dense, _name)


class SqueezeConv(nn.Module):
    """Conv nets on the batch-major folded [B*T, C, H, W] tensor (IAFSqueeze, SumPool2d)."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), sl.IAFSqueeze(batch_size=batch), sl.SumPool2d(3),
            nn.Conv2d(4, 4, 2), sl.LIFSqueeze(tau_mem=6.0, num_timesteps=T), nn.Flatten(), nn.Linear(4, 5),
            sl.IAFSqueeze(batch_size=batch),
        )

    def forward(self, x):
        b, t = x.shape[:2]
        return self.seq(x.flatten(0, 1)).unflatten(0, (b, t))


def squeeze_b1():
    return SqueezeConv(1)


def squeeze_b3():
    return SqueezeConv(3)


def repeat_wrapped():
    """sinabs.layers.Repeat: the wrapped module runs on the folded [B*T, ...] tensor."""
    net = nn.Sequential(sl.Repeat(nn.Conv2d(2, 4, 3)), sl.IAF(), sl.Repeat(nn.Flatten()), nn.Linear(64, 5), sl.IAF(),
                        sl.FlattenTime(), nn.Linear(5, 3), sl.UnflattenTime(batch_size=2), sl.ExpLeak(tau_mem=3.0))
    with torch.no_grad():
        net[3].weight.mul_(4.0)
    return net
