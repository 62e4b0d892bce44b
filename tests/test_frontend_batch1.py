"""Layout inference does not depend on the batch size (issue 12): models that fold time into
the batch around a convolution, written the ways users write them, trace to the same graph
with an example batch of 1 (the most common example input) as with a batch of 3, and the
float engine equals the model on both."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import npuc.nn as nnn
from npuc.frontends import trace
from npuc.ir.serialize import graph_to_json
from npuc.sim import simulate

T = 5


class TimeFoldConv(nn.Module):
    """[T, B, C, H, W] -> x.flatten(0, 1) -> Conv2d -> .reshape(T, B, ...) -> npuc.nn.LIF."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.lif = nnn.LIF(alpha=0.9, threshold=0.5)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.out = nnn.LIF(alpha=0.8, threshold=0.5)

    def forward(self, x):
        t, b = x.shape[:2]
        y = self.conv(x.flatten(0, 1)).reshape(t, b, 4, 6, 6)
        return self.out(self.fc(self.lif(y).flatten(2)))


class BatchFoldConv(nn.Module):
    """sinabs style: [B, T, C, H, W] -> [B*T, ...] -> Conv2d -> .unflatten(0, (B, T)) -> time-major LIF."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.lif = nnn.LIF(alpha=0.9, threshold=0.5)

    def forward(self, x):
        b, t = x.shape[:2]
        y = self.conv(x.flatten(0, 1)).unflatten(0, (b, t)).transpose(0, 1)
        return self.lif(y)


class ChannelAxisConv1d(nn.Module):
    """[T, B, L] -> [T*B, 1, L] (a real feature axis of size 1) -> Conv1d -> .view(T, B, -1) -> LIF."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 3)
        self.lif = nnn.LIF(alpha=0.9, threshold=0.5)

    def forward(self, x):
        t, b = x.shape[:2]
        y = self.conv(x.flatten(0, 1).unsqueeze(1))
        return self.lif(y.view(t, b, -1))


class StepLoopConv(nn.Module):
    """The convolution on the folded sequence, then an snntorch Leaky stepped over y[t]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.lif = snn.Leaky(beta=0.9, threshold=0.5)

    def forward(self, x):
        t, b = x.shape[:2]
        y = self.conv(x.reshape(t * b, *x.shape[2:])).reshape(t, b, -1)
        mem = self.lif.reset_mem()
        out = []
        for k in range(t):
            spk, mem = self.lif(y[k], mem)
            out.append(spk)
        return torch.stack(out)


CASES = {
    "time_fold_conv": (TimeFoldConv, lambda b: (T, b, 2, 6, 6)),
    "batch_fold_conv": (BatchFoldConv, lambda b: (b, T, 2, 6, 6)),
    "channel_axis_conv1d": (ChannelAxisConv1d, lambda b: (T, b, 9)),
    "step_loop_conv": (StepLoopConv, lambda b: (T, b, 2, 5, 5)),
}


def _graph_doc(g):
    doc, arrays = graph_to_json(g)
    return doc, {k: v.tolist() for k, v in arrays.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_1_traces_the_same_graph_as_batch_3(case):
    cls, shape = CASES[case]
    torch.manual_seed(0)
    model = cls().eval()
    rng = np.random.default_rng(0)
    graphs = {}
    for b in (1, 3):
        x = (rng.random(shape(b)) * 2).astype(np.float32)
        g = trace(model, x)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert 0 < want.mean() < 1, case
        np.testing.assert_array_equal(simulate(g, x).output, want)
        graphs[b] = _graph_doc(g)
    assert graphs[1] == graphs[3]
