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


class SEWBlock(nn.Module):
    """SpikingJelly SEW-ResNet basic block (multi-step): two Conv-BN-IF stages and the connect
    function ``sew_function(identity, out, cnf)`` as the reference code writes it."""

    def __init__(self, channels: int, cnf: str) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer, neuron, surrogate

        self.cnf = cnf
        self.conv = nn.Sequential(
            layer.Conv2d(channels, channels, 3, padding=1, bias=False), layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=surrogate.ATan()),
            layer.Conv2d(channels, channels, 3, padding=1, bias=False), layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=surrogate.ATan()))

    def forward(self, x):
        identity, out = x, self.conv(x)
        if self.cnf == "ADD":
            return identity + out
        if self.cnf == "AND":
            return identity * out
        return identity * (1. - out)  # IAND


class SEWNet(nn.Module):
    def __init__(self, cnf: str) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        self.stem = nn.Sequential(layer.Conv2d(2, 16, 3, padding=1, bias=False), layer.BatchNorm2d(16),
                                  neuron.IFNode(surrogate_function=surrogate.ATan()))
        self.block = SEWBlock(16, cnf)
        self.head = nn.Sequential(layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten(), layer.Linear(16, 10),
                                  neuron.IFNode(surrogate_function=surrogate.ATan()))
        functional.set_step_mode(self, "m")

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def _sew(cnf: str) -> SEWNet:
    torch.manual_seed(0)
    model = SEWNet(cnf).eval()
    with torch.no_grad():
        model.head[2].weight.mul_(40.0)
        for conv in (model.stem[0], model.block.conv[0], model.block.conv[3]):
            conv.weight.mul_(4.0)  # enough drive that the block's spikes overlap the identity's
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("cnf", ["IAND", "AND"])
def test_sew_spike_logic_is_exact(cnf):
    """``identity * (1 - out)`` and ``identity * out`` of binary spikes become memoryless logic
    neurons; their spikes equal the library's block output value for value."""
    model = _sew(cnf)
    seen = {}
    hook = model.block.register_forward_hook(lambda m, i, o: seen.update(block=o.detach().numpy()))
    x = (np.random.default_rng(4).random((4, 2, 2, 16, 16)) < 0.3).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    hook.remove()
    graph = trace(model, x)
    res = simulate(graph, x, "float", probe=True)
    (logic,) = [n.name for n in graph if n.meta.get("source") == f"spike {cnf}"]
    assert np.array_equal(res.probes[logic]["spikes"], seen["block"])
    assert 0.01 < seen["block"].mean() < 0.99  # the logic is exercised both ways
    assert np.array_equal(res.output, want)


@pytest.mark.rtl
def test_sew_iand_fpga_build_has_no_rtl_mismatches(tmp_path):
    x = (np.random.default_rng(5).random((4, 1, 2, 16, 16)) < 0.3).astype(np.float32)
    hw = npuc.compile(_sew("IAND"), x, target="fpga", out=tmp_path / "b")
    result = hw.verify(x, engine="rtl")
    assert result.ok, result.format()
