"""Recurrent SNNs for the Spiking Heidelberg Digits (700 input channels, 20 classes), written the
way the snntorch and norse tutorials / SHD reference code write them: a per-step loop over
``x[step]``, explicit state from ``init_*()`` / ``None``, and the tutorial's return values."""

from __future__ import annotations

import norse.torch as norse
import snntorch as snn
import torch
import torch.nn as nn
from snntorch import surrogate

SHD_INPUTS, SHD_CLASSES = 700, 20


class RLeakySHD(nn.Module):
    """snntorch: Linear -> RLeaky (all-to-all) -> Linear -> Leaky; returns (spikes, membranes)
    of the output layer as the snntorch tutorials do."""

    def __init__(self, hidden: int = 128, beta: float = 0.95) -> None:
        super().__init__()
        grad = surrogate.fast_sigmoid(slope=25)
        self.fc1 = nn.Linear(SHD_INPUTS, hidden)
        self.lif1 = snn.RLeaky(beta=beta, linear_features=hidden, spike_grad=grad)
        self.fc2 = nn.Linear(hidden, SHD_CLASSES)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)

    def forward(self, x):
        spk1, mem1 = self.lif1.init_rleaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), spk1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec), torch.stack(mem2_rec)


class RSynapticSHD(nn.Module):
    """snntorch: Linear -> RSynaptic (all-to-all, or one-to-one with a learnable ``V``) ->
    Linear -> Synaptic."""

    def __init__(self, hidden: int = 128, all_to_all: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(SHD_INPUTS, hidden)
        rec = dict(linear_features=hidden) if all_to_all else dict(all_to_all=False, V=0.5, learn_recurrent=True)
        self.lif1 = snn.RSynaptic(alpha=0.9, beta=0.85, **rec)
        self.fc2 = nn.Linear(hidden, SHD_CLASSES)
        self.lif2 = snn.Synaptic(alpha=0.9, beta=0.85)

    def forward(self, x):
        spk1, syn1, mem1 = self.lif1.init_rsynaptic()
        syn2, mem2 = self.lif2.init_synaptic()
        spk2_rec, mem2_rec = [], []
        for step in range(x.shape[0]):
            spk1, syn1, mem1 = self.lif1(self.fc1(x[step]), spk1, syn1, mem1)
            spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec), torch.stack(mem2_rec)


class NorseSHD(nn.Module):
    """norse: LIFRecurrentCell (input and recurrent weights inside the cell) -> Linear ->
    LIFCell, stepped with ``state=None`` first, as norse's SHD/MNIST examples do."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        p = norse.LIFParameters(tau_mem_inv=torch.tensor(100.0), tau_syn_inv=torch.tensor(200.0),
                                v_th=torch.tensor(0.5))
        self.l1 = norse.LIFRecurrentCell(SHD_INPUTS, hidden, p=p, dt=1e-3)
        self.fc_out = nn.Linear(hidden, SHD_CLASSES, bias=False)
        self.out = norse.LIFCell(p=p, dt=1e-3)

    def forward(self, x):
        s1 = so = None
        zs = []
        for ts in range(x.shape[0]):
            z, s1 = self.l1(x[ts], s1)
            zo, so = self.out(self.fc_out(z), so)
            zs.append(zo)
        return torch.stack(zs)


class NorseSHDReadout(nn.Module):
    """norse's SHD example layout: LIFRecurrentCell -> LILinearCell (or Linear -> LICell) membrane
    readout, returning the readout voltages over time (the example's decoder takes their max)."""

    def __init__(self, hidden: int = 128, linear_cell: bool = True) -> None:
        super().__init__()
        p = norse.LIFParameters(tau_mem_inv=torch.tensor(100.0), tau_syn_inv=torch.tensor(200.0),
                                v_th=torch.tensor(0.5))
        self.l1 = norse.LIFRecurrentCell(SHD_INPUTS, hidden, p=p, dt=1e-3)
        self.linear_cell = linear_cell
        if linear_cell:
            self.out = norse.LILinearCell(hidden, SHD_CLASSES, dt=1e-3)
        else:
            self.fc_out = nn.Linear(hidden, SHD_CLASSES, bias=False)
            self.out = norse.LICell(dt=1e-3)

    def forward(self, x):
        s1 = so = None
        voltages = []
        for ts in range(x.shape[0]):
            z, s1 = self.l1(x[ts], s1)
            vo, so = self.out(z if self.linear_cell else self.fc_out(z), so)
            voltages.append(vo)
        return torch.stack(voltages)


def spiking(m: nn.Module) -> nn.Module:
    """norse's default init is too weak to spike on sparse SHD-like input: scale the norse models'
    weights (snntorch models spike as initialised)."""
    if isinstance(m, (NorseSHD, NorseSHDReadout)):
        with torch.no_grad():
            m.l1.input_weights.mul_(20)
            m.l1.recurrent_weights.mul_(5)
            if hasattr(m, "fc_out"):
                m.fc_out.weight.mul_(20)
    if isinstance(m, NorseSHDSequence):
        with torch.no_grad():
            m.net[0].input_weights.mul_(20)
            m.net[0].recurrent_weights.mul_(5)
            m.net[1].weight.mul_(20)
    return m


class NorseSHDSequence(nn.Module):
    """norse's sequence modules in a ``SequentialState``, the way norse's README and SHD example
    write a network over a whole ``[T, B, 700]`` recording: LIFRecurrent (its own input and
    recurrent weights) -> Linear -> LI; the returned readout is the LI membrane over time."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        p = norse.LIFParameters(tau_mem_inv=torch.tensor(100.0), tau_syn_inv=torch.tensor(200.0),
                                v_th=torch.tensor(0.5))
        self.net = norse.SequentialState(
            norse.LIFRecurrent(SHD_INPUTS, hidden, p=p, dt=1e-3),
            nn.Linear(hidden, SHD_CLASSES, bias=False),
            norse.LI(dt=1e-3),
        )

    def forward(self, x):
        voltages, _ = self.net(x)
        return voltages
