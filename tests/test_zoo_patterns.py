"""Model zoo patterns from the libraries' tutorials: snntorch ``Lapicque`` (the tutorial-2 RC
neuron), global average pooling written as ``spk.mean((-2, -1))`` before the classifier.

Float engine == the library bit for bit; an FPGA build runs with 0 RTL mismatches."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn as nn
from snntorch import utils

import npuc
from npuc.errors import FrontendError
from npuc.frontends import trace
from npuc.sim import simulate


class LapicqueNet(nn.Module):
    """snntorch tutorial style: Linear -> Lapicque, explicit ``mem`` from ``init_lapicque()``."""

    def __init__(self, **neuron) -> None:
        super().__init__()
        self.fc = nn.Linear(20, 16)
        self.lif = snn.Lapicque(**neuron)

    def forward(self, x):
        mem = self.lif.init_lapicque()
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[step]), mem)
            spk_rec.append(spk)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class GlobalAveragePoolNet(nn.Module):
    """Conv -> Leaky -> ``spk.mean((-2, -1))`` -> Linear -> Leaky, ``init_hidden`` style."""

    def __init__(self, keepdim: bool = False) -> None:
        super().__init__()
        self.keepdim = keepdim
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)
        self.fc = nn.Linear(8, 10)
        self.lif2 = snn.Leaky(beta=0.9, init_hidden=True, output=True)

    def forward(self, x):
        utils.reset(self)
        spk_rec = []
        for step in range(x.shape[0]):
            s = self.lif1(self.conv(x[step]))
            s = s.mean((-2, -1), keepdim=self.keepdim)
            spk, _ = self.lif2(self.fc(s.flatten(1)))
            spk_rec.append(spk)
        return torch.stack(spk_rec)


LAPICQUE = {
    "beta": dict(beta=0.9),
    "rc": dict(R=5.0, C=2.5e-3, time_step=1e-3),
    "rc-zero-reset": dict(R=5.0, C=2.5e-3, time_step=1e-3, reset_mechanism="zero"),
}


def _run(model: nn.Module, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    return simulate(trace(model, x), x, "float").outputs, want


@pytest.mark.parametrize("case", list(LAPICQUE))
def test_lapicque_float_equals_snntorch(case):
    torch.manual_seed(0)
    model = LapicqueNet(**LAPICQUE[case]).eval()
    with torch.no_grad():
        model.fc.weight.mul_(4.0)
    x = np.random.default_rng(0).random((40, 6, 20)).astype(np.float32)
    got, want = _run(model, x)
    assert 0.0 < want[0].mean() < 1.0
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


@pytest.mark.parametrize("keepdim", [False, True])
def test_spike_mean_before_the_classifier_is_exact(keepdim):
    torch.manual_seed(1)
    model = GlobalAveragePoolNet(keepdim).eval()
    x = np.random.default_rng(1).random((8, 3, 1, 12, 12)).astype(np.float32)
    got, want = _run(model, x)
    assert np.array_equal(got[0], want[0]) and 0.0 < want[0].mean() < 1.0


def test_mean_of_currents_is_refused_with_the_alternative():
    class CurrentMean(GlobalAveragePoolNet):
        def forward(self, x):
            utils.reset(self)
            return torch.stack([self.lif2(self.fc(self.conv(x[t]).mean((-2, -1))))[0] for t in range(x.shape[0])])

    x = np.random.default_rng(2).random((4, 2, 1, 12, 12)).astype(np.float32)
    with pytest.raises(FrontendError, match=r"spatial axes \(-2, -1\) is supported of neuron spikes"):
        trace(CurrentMean().eval(), x)


@pytest.mark.rtl
@pytest.mark.parametrize("name", ["lapicque", "global-average-pool"])
def test_fpga_builds_have_no_rtl_mismatches(name, tmp_path):
    torch.manual_seed(0)
    if name == "lapicque":
        model = LapicqueNet(R=5.0, C=2.5e-3, time_step=1e-3).eval()
        x = np.random.default_rng(3).random((12, 2, 20)).astype(np.float32)
    else:
        model = GlobalAveragePoolNet().eval()
        x = np.random.default_rng(3).random((6, 2, 1, 12, 12)).astype(np.float32)
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    result = hw.verify(x, engine="rtl")
    assert result.ok, result.format()
