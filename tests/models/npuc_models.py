"""Models built from npuc.nn (trained in the tests, compiled through the CLI)."""

from __future__ import annotations

import torch
import torch.nn as nn

import npuc.nn as nnn

T = 12


class Classifier(nn.Module):
    """RateEncoder -> Linear -> LIF (learned decay and threshold) -> Linear -> LIF membrane readout."""

    def __init__(self, encoder: str = "rate") -> None:
        super().__init__()
        enc = {"rate": nnn.RateEncoder(T), "bernoulli": nnn.BernoulliEncoder(T, bits=10, seed=7),
               "latency": nnn.LatencyEncoder(T), "timecode": nnn.TimeCodeEncoder(T), "current": nnn.CurrentEncoder(T)}
        self.enc = enc[encoder]
        self.fc1 = nn.Linear(16, 32)
        self.lif1 = nnn.LIF(alpha=torch.full((32,), 0.9), threshold=torch.full((32,), 1.0), learn=("alpha", "threshold"),
                            surrogate=nnn.Sigmoid(5.0))
        self.fc2 = nn.Linear(32, 2)
        self.out = nnn.LIF(alpha=0.95, output="v", reset="none")

    def forward(self, x):
        return self.out(self.fc2(self.lif1(self.fc1(self.enc(x))))).mean(0)


def classifier():
    return Classifier("rate")


def classifier_bernoulli():
    return Classifier("bernoulli")


def classifier_latency():
    return Classifier("latency")


def classifier_timecode():
    return Classifier("timecode")


def classifier_current():
    return Classifier("current")
