"""snntorch models for the frontend tests (imported by the CLI as file.py:factory).

Every factory takes no arguments; configurations are generated below as
module-level callables named in ``LOOP_CONFIGS``.
"""

from __future__ import annotations

import functools

import snntorch as snn
import snntorch.utils
import torch
import torch.nn as nn

T = 12
N_IN, N_HID, N_OUT = 10, 24, 6


class LoopNet(nn.Module):
    """The snntorch tutorial shape: explicit time loop over x[t], reset_mem(), (spk, mem) tuples."""

    def __init__(self, kind: str = "leaky", **kw) -> None:
        super().__init__()
        self.kind = kind
        self.fc1 = nn.Linear(N_IN, N_HID)
        self.fc2 = nn.Linear(N_HID, N_OUT)
        n = N_HID
        if kind == "leaky":
            self.lif1 = snn.Leaky(beta=torch.full((n,), 0.85), threshold=torch.full((n,), 1.0), learn_beta=True,
                                  learn_threshold=True, **kw)
        elif kind == "synaptic":
            self.lif1 = snn.Synaptic(alpha=torch.full((n,), 0.6), beta=torch.full((n,), 0.85), learn_alpha=True,
                                     learn_beta=True, learn_threshold=True, **kw)
        elif kind == "rleaky_linear":
            self.lif1 = snn.RLeaky(beta=0.85, linear_features=n, **kw)
        elif kind == "rleaky_v":
            self.lif1 = snn.RLeaky(beta=0.85, all_to_all=False, V=torch.full((n,), 0.3), learn_recurrent=True, **kw)
        else:
            raise ValueError(kind)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism=kw.get("reset_mechanism", "subtract"),
                              reset_delay=kw.get("reset_delay", True))
        with torch.no_grad():
            self.fc2.weight.mul_(4.0)  # drive the output layer enough to spike often

    def forward(self, x):
        if self.kind == "synaptic":
            syn1, mem1 = self.lif1.reset_mem()
        elif self.kind.startswith("rleaky"):
            spk1, mem1 = self.lif1.init_rleaky()
        else:
            mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.reset_mem()
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            cur1 = self.fc1(x[step])
            if self.kind == "synaptic":
                spk1, syn1, mem1 = self.lif1(cur1, syn1, mem1)
            elif self.kind.startswith("rleaky"):
                spk1, mem1 = self.lif1(cur1, spk1, mem1)
            else:
                spk1, mem1 = self.lif1(cur1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec, dim=0), torch.stack(mem_rec, dim=0)


LOOP_CONFIGS = {}
for _kind in ("leaky", "synaptic", "rleaky_linear", "rleaky_v"):
    for _mech in ("subtract", "zero", "none"):
        for _delay in (True, False):
            LOOP_CONFIGS[f"{_kind}_{_mech}_{'delay' if _delay else 'nodelay'}"] = dict(
                kind=_kind, reset_mechanism=_mech, reset_delay=_delay)
LOOP_CONFIGS["leaky_graded"] = dict(kind="leaky", graded_spikes_factor=2.5, learn_graded_spikes_factor=True)
for _name, _kw in LOOP_CONFIGS.items():
    globals()[_name] = functools.partial(LoopNet, **_kw)


class HiddenLoop(nn.Module):
    """init_hidden=True neurons in a Sequential, stepped in a loop on a static input,
    reset with snntorch.utils.reset; the last layer returns (spk, mem) (output=True)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(N_IN, N_HID), snn.Leaky(beta=0.9, init_hidden=True),
            nn.Linear(N_HID, N_OUT), snn.Leaky(beta=0.8, init_hidden=True, output=True, reset_mechanism="zero"),
        )

    def forward(self, x):
        snntorch.utils.reset(self.net)
        spk_rec, mem_rec = [], []
        for _ in range(T):
            spk, mem = self.net(x)
            spk_rec.append(spk)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def hidden_loop():
    return HiddenLoop()


def step_sequential():
    """A bare one-step model: the compiled graph runs it once per step of a [T, B, ...] input."""
    return nn.Sequential(nn.Linear(N_IN, N_HID), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(N_HID, N_OUT), snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True))


class ConvNet(nn.Module):
    """Conv -> MaxPool -> Leaky -> Flatten -> Linear -> Leaky, spike count decoding (.sum(0))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.lif1 = snn.Leaky(beta=0.8)
        self.fc = nn.Linear(6 * 4 * 4, N_OUT)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for t in range(x.size(0)):
            spk1, mem1 = self.lif1(self.pool(self.conv(x[t])), mem1)
            spk2, mem2 = self.lif2(self.fc(spk1.flatten(1)), mem2)
            out.append(spk2)
        return torch.stack(out).sum(0)


def conv_net():
    return ConvNet()


class RecurrentProbe(nn.Module):
    """RLeaky whose own membrane is returned (see test_rleaky_membrane_rounding)."""

    def __init__(self, kind: str = "linear", mech: str = "subtract") -> None:
        super().__init__()
        self.fc = nn.Linear(N_IN, 32)
        if kind == "linear":
            self.lif = snn.RLeaky(beta=0.9, linear_features=32, reset_mechanism=mech)
        else:
            self.lif = snn.RLeaky(beta=0.9, all_to_all=False, V=torch.linspace(-0.5, 0.5, 32), reset_mechanism=mech)

    def forward(self, x):
        spk, mem = self.lif.init_rleaky()
        s_rec, m_rec = [], []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]), spk, mem)
            s_rec.append(spk)
            m_rec.append(mem)
        return torch.stack(s_rec), torch.stack(m_rec)
