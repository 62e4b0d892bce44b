"""norse models for the frontend tests: cells stepped with explicit state."""

from __future__ import annotations

import functools

import norse.torch as norse
import torch
import torch.nn as nn
from norse.torch.functional.iaf import IAFParameters
from norse.torch.functional.lif import LIFParameters
from norse.torch.functional.lif_box import LIFBoxParameters
from norse.torch.functional.reset import reset_subtract


def _vec(lo: float, hi: float, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g) * (hi - lo) + lo


def params(kind: str):
    if kind == "default":
        return LIFParameters(), LIFBoxParameters(), IAFParameters(), 1e-3
    if kind == "offsets":  # v_leak, v_reset != 0 (canonicalised by shifting the membrane)
        return (LIFParameters(tau_syn_inv=torch.tensor(150.0), tau_mem_inv=torch.tensor(70.0), v_leak=torch.tensor(-0.2),
                              v_th=torch.tensor(0.8), v_reset=torch.tensor(-0.5)),
                LIFBoxParameters(tau_mem_inv=torch.tensor(120.0), v_leak=torch.tensor(0.1), v_th=torch.tensor(0.9),
                                 v_reset=torch.tensor(0.1)),
                IAFParameters(v_th=torch.tensor(0.7), v_reset=torch.tensor(-0.1)), 3.7e-3)
    if kind == "per_neuron":  # per-neuron taus and thresholds, box cell with subtract reset
        return (LIFParameters(tau_syn_inv=_vec(50, 300, 20, 1), tau_mem_inv=_vec(30, 200, 20, 2),
                              v_leak=torch.tensor(0.1), v_th=_vec(0.5, 1.5, 20, 3), v_reset=torch.tensor(0.1)),
                LIFBoxParameters(tau_mem_inv=_vec(50, 150, 12, 4), v_th=_vec(0.5, 1.5, 12, 5), reset_method=reset_subtract),
                IAFParameters(), 1e-3)
    if kind == "python_floats":  # LIFBoxCell keeps Python-float parameters as given
        return LIFParameters(), LIFBoxParameters(tau_mem_inv=80.0, v_th=0.9), IAFParameters(), 2e-3
    raise ValueError(kind)


class CellLoop(nn.Module):
    """LIFCell -> LIFBoxCell -> IAFCell, states threaded through a loop over x[t];
    returns the output spikes and the first cell's membrane and current."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        p_lif, p_box, p_iaf, dt = params(kind)
        self.fc1 = nn.Linear(10, 20)
        self.lif = norse.LIFCell(p_lif, dt=dt)
        self.fc2 = nn.Linear(20, 12)
        self.box = norse.LIFBoxCell(p_box, dt=dt)
        self.fc3 = nn.Linear(12, 5)
        self.iaf = norse.IAFCell(p_iaf)
        with torch.no_grad():
            self.fc3.weight.mul_(4.0)

    def forward(self, x):
        s1 = s2 = s3 = None
        out, vs, cur = [], [], []
        for t in range(x.shape[0]):
            z, s1 = self.lif(self.fc1(x[t]) * 20.0, s1)
            z, s2 = self.box(self.fc2(z) * 30.0, s2)
            z, s3 = self.iaf(self.fc3(z), s3)
            out.append(z)
            vs.append(s1.v)
            cur.append(s1.i)
        return torch.stack(out), torch.stack(vs), torch.stack(cur)


for _k in ("default", "offsets", "per_neuron", "python_floats"):
    globals()[f"cells_{_k}"] = functools.partial(CellLoop, _k)


class Sequential(nn.Module):
    """norse.SequentialState stepped in a loop with its list of cell states."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = norse.SequentialState(nn.Linear(10, 20), norse.LIFCell(), nn.Linear(20, 5), norse.LIFBoxCell())
        with torch.no_grad():
            self.seq[0].weight.mul_(20.0)
            self.seq[2].weight.mul_(20.0)

    def forward(self, x):
        state = None
        out = []
        for t in range(x.shape[0]):
            z, state = self.seq(x[t], state)
            out.append(z)
        return torch.stack(out)


def sequential_state():
    return Sequential()


class SequenceMLP(nn.Module):
    """norse's README network: ``SequentialState(Linear, LIF, Linear, LIF)`` over a whole
    ``[T, B, 10]`` input (the LIF sequence modules loop over time inside); returns the output spikes."""

    def __init__(self, kind: str = "default") -> None:
        super().__init__()
        p_lif, _, _, dt = params(kind)
        self.net = norse.SequentialState(nn.Linear(10, 20), norse.LIF(p_lif, dt=dt),
                                         nn.Linear(20, 5), norse.LIF(p_lif, dt=dt))
        with torch.no_grad():
            self.net[0].weight.mul_(20.0)
            self.net[2].weight.mul_(20.0)

    def forward(self, x):
        out, _ = self.net(x)
        return out


for _k in ("default", "offsets"):
    globals()[f"sequence_mlp_{_k}"] = functools.partial(SequenceMLP, _k)


class SequenceLayers(nn.Module):
    """norse's sequence modules called directly on ``[T, B, 10]``: Linear -> LIF -> Linear -> IAF,
    and Linear -> LI as a membrane readout. Returns the IAF spikes, the LI voltages and the LIF
    layer's final state (``v``, ``i`` after the last step) as norse returns it."""

    def __init__(self) -> None:
        super().__init__()
        p_lif, _, p_iaf, dt = params("offsets")
        self.fc1 = nn.Linear(10, 20)
        self.lif = norse.LIF(p_lif, dt=dt)
        self.fc2 = nn.Linear(20, 12)
        self.iaf = norse.IAF(p_iaf)
        self.fc3 = nn.Linear(12, 4)
        self.li = norse.LI(dt=dt)
        with torch.no_grad():
            self.fc1.weight.mul_(20.0)
            self.fc2.weight.mul_(2.0)

    def forward(self, x):
        z, s = self.lif(self.fc1(x))
        z, _ = self.iaf(self.fc2(z))
        v, _ = self.li(self.fc3(z))
        return z, v, s.v, s.i


def sequence_layers():
    return SequenceLayers()
