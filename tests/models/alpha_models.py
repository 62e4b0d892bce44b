"""snntorch ``Alpha`` neurons, written the way snntorch's docs write them.

* `AlphaMLP`: the ``Alpha`` docstring's first example: ``Linear -> Alpha -> Linear -> Alpha`` with
  the explicit state ``(syn_exc, syn_inh, mem)`` from ``init_alpha()`` passed back every step.
* `AlphaSHD`: the docstring's second form on SHD-sized data (700 -> 128 -> 20): an
  ``nn.Sequential`` of ``Alpha(init_hidden=True)`` layers, the last with ``output=True`` (it returns
  ``spk, syn_exc, syn_inh, mem``), stepped over ``x[step]`` after ``utils.reset``; returns the output
  layer's spikes and membranes ``[T, B, 20]``.

snntorch's defaults: ``reset_mechanism="zero"``, which clears all three states on the step after a
spike. Weights are scaled from PyTorch's default init so that every layer spikes on sparse input
(the alpha kernel's peak response is a fraction of its input).
"""

from __future__ import annotations

import snntorch as snn
import torch
import torch.nn as nn
from snntorch import surrogate, utils

SHD_INPUTS, SHD_CLASSES = 700, 20
ALPHA, BETA = 0.9, 0.8  # the values of snntorch's docstring


class AlphaMLP(nn.Module):
    """``Linear -> Alpha -> Linear -> Alpha`` with explicit state; returns ``(spk_rec, mem_rec)``."""

    def __init__(self, inputs: int = 16, hidden: int = 24, outputs: int = 6, reset_mechanism: str = "zero") -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.lif1 = snn.Alpha(alpha=ALPHA, beta=BETA, reset_mechanism=reset_mechanism)
        self.fc2 = nn.Linear(hidden, outputs)
        self.lif2 = snn.Alpha(alpha=ALPHA, beta=BETA, reset_mechanism=reset_mechanism)

    def forward(self, x):
        syn_exc1, syn_inh1, mem1 = self.lif1.init_alpha()
        syn_exc2, syn_inh2, mem2 = self.lif2.init_alpha()
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            cur1 = self.fc1(x[step])
            spk1, syn_exc1, syn_inh1, mem1 = self.lif1(cur1, syn_exc1, syn_inh1, mem1)
            cur2 = self.fc2(spk1)
            spk2, syn_exc2, syn_inh2, mem2 = self.lif2(cur2, syn_exc2, syn_inh2, mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class AlphaSHD(nn.Module):
    """700 -> 128 -> 20 ``nn.Sequential`` of ``Alpha(init_hidden=True)`` (last ``output=True``)."""

    def __init__(self, hidden: int = 128, inputs: int = SHD_INPUTS, outputs: int = SHD_CLASSES) -> None:
        super().__init__()
        grad = surrogate.fast_sigmoid(slope=25)
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            snn.Alpha(alpha=ALPHA, beta=BETA, spike_grad=grad, init_hidden=True),
            nn.Linear(hidden, outputs),
            snn.Alpha(alpha=ALPHA, beta=BETA, spike_grad=grad, init_hidden=True, output=True),
        )

    def forward(self, x):
        utils.reset(self.net)
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            spk, syn_exc, syn_inh, mem = self.net(x[step])
            spk_rec.append(spk)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def spiking(m: nn.Module, gains: tuple[float, float] = (10.0, 6.0)) -> nn.Module:
    """Seeded weights scaled so that both layers spike on sparse input."""
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    with torch.no_grad():
        for lin, g in zip(linears, gains):
            lin.weight.mul_(g)
    return m


def alpha_mlp(reset_mechanism: str = "zero") -> nn.Module:
    torch.manual_seed(0)
    return spiking(AlphaMLP(reset_mechanism=reset_mechanism).eval(), (8.0, 6.0))


def alpha_shd() -> nn.Module:
    torch.manual_seed(0)
    return spiking(AlphaSHD().eval())


def alpha_shd_small() -> nn.Module:
    """The SHD structure at reduced size (for the slow hardware simulators)."""
    torch.manual_seed(0)
    return spiking(AlphaSHD(hidden=16, inputs=40, outputs=5).eval(), (10.0, 8.0))
