"""Models and objects the frontend must reject with a clear one-line error."""

from __future__ import annotations

import norse.torch as norse
import snntorch as snn
import torch
import torch.nn as nn


class TrainingConfig:
    """Stands for the extra objects people pickle into checkpoints (needs --trust-checkpoint)."""

    def __init__(self, lr: float = 1e-3) -> None:
        self.lr = lr


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.lif = snn.Leaky(beta=0.9)

    def forward(self, x):
        mem = self.lif.reset_mem()
        out = []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]), mem)
            out.append(spk)
        return torch.stack(out)


def small():
    return Small()


def unsupported_layer():
    """An ANN activation between layers (no IR equivalent)."""
    return nn.Sequential(nn.Linear(6, 8), nn.GELU(), snn.Leaky(beta=0.9, init_hidden=True))


def unsupported_neuron():
    """snntorch's StateLeaky neuron (no converter)."""
    return nn.Sequential(nn.Linear(6, 8), snn.StateLeaky(beta=0.9, channels=8))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = Small()

    def forward(self, x):
        if x.sum() > 0:
            return self.net(x)
        return self.net(-x)


def data_dependent():
    return DataDependent()


class StepBranch(Small):
    """The first step computes something the other steps do not."""

    def forward(self, x):
        mem = self.lif.reset_mem()
        out = []
        for t in range(x.shape[0]):
            cur = self.fc(x[t])
            if t == 0:
                cur = cur * 2.0
            spk, mem = self.lif(cur, mem)
            out.append(spk)
        return torch.stack(out)


def step_branch():
    return StepBranch()


def no_neurons():
    return nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.1))


def not_a_module():
    return 42


def needs_argument(width):
    return nn.Linear(width, width)


class MyLeaky(snn.Leaky):
    """A user subclass: its forward may differ from Leaky's, so it is not converted as one."""


def subclassed_neuron():
    return nn.Sequential(nn.Linear(6, 8), MyLeaky(beta=0.9, init_hidden=True))


class KeywordNames(nn.Module):
    """A submodule named like a Python keyword (torch.fx generates `self.class(...)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("class", nn.Linear(6, 8))
        self.lif = snn.Leaky(beta=0.9)

    def forward(self, x):
        mem = self.lif.reset_mem()
        out = []
        for t in range(x.shape[0]):
            spk, mem = self.lif(getattr(self, "class")(x[t]), mem)
            out.append(spk)
        return torch.stack(out)


def keyword_names():
    return KeywordNames()


def raises_in_factory():
    raise RuntimeError("boom in factory")


class NorseSequence(nn.Module):
    """norse sequence modules used in ways npuc cannot compile (``how`` picks one)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.fc = nn.Linear(6, 8)
        self.lif = norse.LIF(record_states=how == "record_states")
        self.readout = nn.Linear(8, 3)

    def forward(self, x):
        if self.how == "carried_state":  # streaming: the next chunk starts from this chunk's final state
            _, s = self.lif(self.fc(x))
            z, _ = self.lif(self.fc(x), s)
            return z
        z, s = self.lif(self.fc(x))
        if self.how == "final_state_computed":
            return self.readout(s.v)
        return z


def norse_record_states():
    return NorseSequence("record_states")


def norse_carried_state():
    return NorseSequence("carried_state")


def norse_final_state_computed():
    return NorseSequence("final_state_computed")


def norse_sequential_state_as_model():
    """norse's README network compiled as it is: its forward returns ``(output, states)``."""
    return norse.SequentialState(nn.Linear(6, 8), norse.LIF(), nn.Linear(8, 3), norse.LIF())
