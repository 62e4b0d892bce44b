"""Models exercising the torch.nn layers and tensor operations the frontend converts."""

from __future__ import annotations

import snntorch as snn
import snntorch.utils
import torch
import torch.nn as nn
import torch.nn.functional as F

import npuc.nn as nnn

T = 10


class Residual(nn.Module):
    """snntorch loop with a residual add, scalar multiplies, a subtraction, dropout and
    firing-rate decoding (.mean(0))."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(16, 16)
        self.lif2 = snn.Leaky(beta=0.8)
        self.fc3 = nn.Linear(16, 16)
        self.lif3 = snn.Leaky(beta=0.7, threshold=0.5)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        m1, m2, m3 = self.lif1.reset_mem(), self.lif2.reset_mem(), self.lif3.reset_mem()
        out = []
        for t in range(T):
            s1, m1 = self.lif1(self.fc1(x[t]), m1)
            s2, m2 = self.lif2(self.fc2(self.drop(s1)), m2)
            mixed = s1 + 0.5 * s2 - self.fc3(s2) * 0.25
            s3, m3 = self.lif3(mixed, m3)
            out.append(s3)
        return torch.stack(out).mean(0)


def residual():
    return Residual()


class FoldedConv(nn.Module):
    """npuc.nn neurons on [T, B, ...], the user folding time into the batch for conv layers:
    grouped and depthwise Conv1d ('same' padding), BatchNorm1d/2d, AvgPool2d,
    AdaptiveAvgPool2d, permute, view/reshape/flatten/unflatten; two inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 3, padding=1, groups=2)
        self.bn1 = nn.BatchNorm1d(8)
        self.c2 = nn.Conv1d(8, 8, 3, padding="same", groups=8)
        self.lif1 = nnn.LIF(alpha=0.9, threshold=0.8)
        self.c3 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)
        self.lif2 = nnn.IF(threshold=1.0, reset="value", compare="ge")
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.fa = nn.Linear(8 * 16, 16)
        self.fb = nn.Linear(16, 16)
        self.lif3 = nnn.LIF(alpha=0.85)
        self.out = nn.Linear(16, 6)
        self.lif4 = nnn.LIF(alpha=0.9, output="v")
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.5, 1.5)
            self.fa.weight.mul_(3.0)
            self.fb.weight.mul_(3.0)

    def forward(self, a, b):
        # a: [T, B, 4, 16] for Conv1d, b: [T, B, 2, 8, 8] for Conv2d
        steps, batch = a.shape[:2]
        ya = self.c2(self.bn1(self.c1(a.flatten(0, 1)))).unflatten(0, (steps, batch))
        sa = self.lif1(ya)
        yb = self.pool(self.bn2(self.c3(b.reshape(steps * batch, 2, 8, 8)))).view(steps, batch, 4, 4, 4)
        sb = self.lif2(yb)
        gb = self.gap(sb.flatten(0, 1)).permute(0, 2, 3, 1).reshape(steps, batch, 16)
        h = self.lif3(self.fa(sa.reshape(steps, batch, 8 * 16)) + self.fb(gb))
        return self.lif4(self.out(h))


def folded_conv():
    return FoldedConv()


class Functional(nn.Module):
    """Functional forms: F.conv2d / F.max_pool2d / torch.flatten / F.linear with the
    module's own parameters, in a SpikingJelly-free, snntorch per-step loop."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 1, 3, 3) * 0.6)
        self.b1 = nn.Parameter(torch.randn(4) * 0.1)
        self.w2 = nn.Parameter(torch.randn(5, 4 * 3 * 3) * 0.5)
        self.lif1 = snn.Leaky(beta=0.8, init_hidden=True)
        self.lif2 = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        snntorch.utils.reset(self)
        out = []
        for xt in x:  # iterating over the time axis
            y = F.max_pool2d(F.conv2d(xt, self.w1, self.b1, padding=1), 2)
            s = self.lif1(y)
            out.append(self.lif2(F.linear(torch.flatten(s, 1), self.w2)))
        return torch.stack(out, 0)


def functional():
    return Functional()


def step_model():
    """One step per call; compiled with --steps it takes a static input."""
    return nn.Sequential(nn.Linear(12, 16), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(16, 4), snn.Leaky(beta=0.9, init_hidden=True, output=True))
