"""snntorch's convolutional tutorial network (tutorials 6 and 7), written the way the tutorial writes it.

Structure as in snntorch's tutorial 6 ("Surrogate Gradient Descent in a Convolutional SNN"):
an ``nn.Sequential`` of ``Conv2d(1, 12, 5), MaxPool2d(2), Leaky(init_hidden=True),
Conv2d(12, 64, 5), MaxPool2d(2), Leaky(init_hidden=True), Flatten(), Linear(64*4*4, 10),
Leaky(init_hidden=True, output=True)``, stepped by a ``forward_pass`` loop after
``utils.reset(net)``; tutorial 7 feeds ``data[step]`` of a time-major spike tensor
(here ``spikegen.rate`` of MNIST-sized images). snntorch's defaults: subtract reset, ``reset_delay=True``.
"""

from __future__ import annotations

import snntorch as snn
import torch
import torch.nn as nn
from snntorch import surrogate, utils

BETA = 0.5
NUM_STEPS = 25


class TutorialCSNN(nn.Module):
    """The tutorial's ``net`` plus its ``forward_pass`` (returns ``(spk_rec, mem_rec)``, ``[T, B, 10]``)."""

    def __init__(self, beta: float = BETA, channels: tuple[int, int] = (12, 64), size: int = 28) -> None:
        super().__init__()
        spike_grad = surrogate.fast_sigmoid(slope=25)
        c1, c2 = channels
        side = ((size - 4) // 2 - 4) // 2
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 5),
            nn.MaxPool2d(2),
            snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
            nn.Conv2d(c1, c2, 5),
            nn.MaxPool2d(2),
            snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
            nn.Flatten(),
            nn.Linear(c2 * side * side, 10),
            snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True),
        )

    def forward(self, data):
        mem_rec, spk_rec = [], []
        utils.reset(self.net)
        for step in range(data.size(0)):
            spk_out, mem_out = self.net(data[step])
            spk_rec.append(spk_out)
            mem_rec.append(mem_out)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def tutorial_csnn():
    return TutorialCSNN()


def tutorial_csnn_small():
    """The same structure at reduced width (for the slow hardware simulators)."""
    return TutorialCSNN(channels=(4, 8))


def spiking_csnn(small: bool = False) -> nn.Module:
    """The tutorial net with seeded random weights, scaled so that every layer spikes (an untrained
    net at PyTorch's default init barely reaches the output layer)."""
    torch.manual_seed(0)
    m = (tutorial_csnn_small() if small else tutorial_csnn()).eval()
    with torch.no_grad():
        for mod, f in zip((m.net[0], m.net[3], m.net[7]), (4.0, 6.0 if not small else 10.0, 8.0)):
            mod.weight.mul_(f)
    return m


def rate_images(batch: int, seed: int = 1, steps: int = NUM_STEPS) -> torch.Tensor:
    """Random 28x28 images rate-coded with ``spikegen.rate`` as the tutorial feeds MNIST: ``[T, B, 1, 28, 28]``."""
    from snntorch import spikegen

    g = torch.Generator().manual_seed(seed)
    img = torch.rand((batch, 1, 28, 28), generator=g)
    torch.manual_seed(seed)  # spikegen.rate draws from the global generator
    return spikegen.rate(img, num_steps=steps)


class TutorialMLP(nn.Module):
    """snntorch tutorial 5's fully connected net (``fc1 -> lif1 -> fc2 -> lif2`` with
    ``init_leaky()`` and a loop over ``x[step]``, returning the stacked output spikes and
    membranes), at the sizes the speed benchmark uses."""

    def __init__(self, num_inputs: int = 64, num_hidden: int = 96, num_outputs: int = 10, beta: float = 0.9) -> None:
        super().__init__()
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = snn.Leaky(beta=beta)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def spiking_mlp() -> TutorialMLP:
    """The tutorial MLP with seeded weights scaled so that both layers spike on rate-coded input."""
    torch.manual_seed(0)
    m = TutorialMLP().eval()
    with torch.no_grad():
        m.fc1.weight.mul_(3.0)
        m.fc2.weight.mul_(3.0)
    return m


class LearnedDecayMLP(TutorialMLP):
    """Tutorial 5's MLP with a decay learned per neuron, as snntorch's docs write it:
    ``Leaky(beta=<tensor of num_hidden>, learn_beta=True)`` (the tutorials draw it with
    ``torch.rand``; here uniform in [0.5, 0.99], the range training leaves). ``synaptic=True``
    uses ``Synaptic(alpha=<tensor>, beta=<tensor>, learn_alpha=True, learn_beta=True)`` instead
    (the current decays per neuron too), stepped with ``init_synaptic()``."""

    def __init__(self, num_inputs: int = 64, num_hidden: int = 96, num_outputs: int = 10, synaptic: bool = False,
                 seed: int = 0) -> None:
        super().__init__(num_inputs, num_hidden, num_outputs)
        g = torch.Generator().manual_seed(seed)
        self.synaptic = synaptic

        def decay(n: int) -> torch.Tensor:
            return 0.5 + 0.49 * torch.rand(n, generator=g)

        if synaptic:
            self.lif1 = snn.Synaptic(alpha=decay(num_hidden), beta=decay(num_hidden), learn_alpha=True, learn_beta=True)
            self.lif2 = snn.Synaptic(alpha=decay(num_outputs), beta=decay(num_outputs), learn_alpha=True,
                                     learn_beta=True)
        else:
            self.lif1 = snn.Leaky(beta=decay(num_hidden), learn_beta=True)
            self.lif2 = snn.Leaky(beta=decay(num_outputs), learn_beta=True)

    def forward(self, x):
        if not self.synaptic:
            return super().forward(x)
        syn1, mem1 = self.lif1.init_synaptic()
        syn2, mem2 = self.lif2.init_synaptic()
        spk2_rec, mem2_rec = [], []
        for step in range(x.shape[0]):
            spk1, syn1, mem1 = self.lif1(self.fc1(x[step]), syn1, mem1)
            spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def learned_decay_mlp(synaptic: bool = False) -> LearnedDecayMLP:
    """`LearnedDecayMLP` with seeded weights scaled so that both layers spike on rate-coded digits-size input."""
    torch.manual_seed(0)
    m = LearnedDecayMLP(synaptic=synaptic).eval()
    with torch.no_grad():
        m.fc1.weight.mul_(3.0 if not synaptic else 1.5)
        m.fc2.weight.mul_(3.0 if not synaptic else 1.5)
    return m
