"""SpikingJelly models for the frontend tests (CLI factories, no arguments)."""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron

T = 8

NODES = {
    "if": lambda: neuron.IFNode(),
    "if_vr": lambda: neuron.IFNode(v_threshold=0.8, v_reset=0.3),
    "if_soft": lambda: neuron.IFNode(v_reset=None),
    "lif": lambda: neuron.LIFNode(tau=2.0),
    "lif_nodecay": lambda: neuron.LIFNode(tau=3.7, decay_input=False),
    "lif_nodecay_vr": lambda: neuron.LIFNode(tau=3.7, decay_input=False, v_reset=-0.3),
    "lif_soft": lambda: neuron.LIFNode(tau=2.5, v_reset=None, v_threshold=0.7),
    "lif_vr": lambda: neuron.LIFNode(tau=2.5, v_reset=0.4),
    "plif": lambda: neuron.ParametricLIFNode(init_tau=3.0),
    "plif_nodecay_vr": lambda: neuron.ParametricLIFNode(init_tau=3.0, decay_input=False, v_reset=0.2),
    "plif_soft": lambda: neuron.ParametricLIFNode(init_tau=2.2, v_reset=None, decay_input=False),
}


BOOST = {"lif": 3.0, "lif_soft": 2.0, "lif_vr": 2.5, "plif": 3.5}
"""Extra synaptic gain for nodes that divide their input by tau, so every layer spikes."""


def _boost(model: nn.Module, node: str) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(BOOST.get(node, 1.0))


def multi_step(node: str) -> nn.Module:
    """Multi-step ('m') conv net on [T, B, C, H, W] with layer.* wrappers."""
    mk = NODES[node]
    net = nn.Sequential(
        layer.Conv2d(2, 6, 3, padding=1), layer.BatchNorm2d(6), mk(), layer.MaxPool2d(2),
        layer.Conv2d(6, 6, 3, padding=1, groups=6), mk(), layer.AvgPool2d(3),
        layer.Flatten(), layer.Linear(6, 5), mk(),
    )
    with torch.no_grad():  # drive the deeper layers enough to spike
        net[4].weight.mul_(3.0)
        net[8].weight.mul_(8.0)
    _boost(net, node)
    functional.set_step_mode(net, "m")
    return net


class SingleStepLoop(nn.Module):
    """Single-step ('s') nodes in a user loop over x[t], reset with functional.reset_net."""

    def __init__(self, node: str) -> None:
        super().__init__()
        mk = NODES[node]
        self.fc1 = layer.Linear(10, 20)
        self.sn1 = mk()
        self.fc2 = nn.Linear(20, 5)
        self.sn2 = mk()
        with torch.no_grad():
            self.fc2.weight.mul_(4.0)
        _boost(self, node)

    def forward(self, x):
        functional.reset_net(self)
        out = []
        for t in range(x.shape[0]):
            out.append(self.sn2(self.fc2(self.sn1(self.fc1(x[t])))))
        return torch.stack(out)


for _name in NODES:
    globals()[f"m_{_name}"] = functools.partial(multi_step, _name)
    globals()[f"s_{_name}"] = functools.partial(SingleStepLoop, _name)


class StaticRepeat(nn.Module):
    """The SpikingJelly tutorial shape: a static image repeated T times, SeqToANNContainer
    layers, multi-step nodes, firing-rate decoding (.mean(0))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = layer.SeqToANNContainer(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        self.sn1 = neuron.LIFNode(tau=2.0, step_mode="m")
        self.fc = layer.SeqToANNContainer(nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
        self.sn2 = neuron.IFNode(step_mode="m")
        with torch.no_grad():
            self.fc[1].weight.mul_(3.0)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        return self.sn2(self.fc(self.sn1(self.conv(x)))).mean(0)


def static_repeat():
    return StaticRepeat()
