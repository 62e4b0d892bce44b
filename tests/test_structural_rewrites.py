"""Models that need the legalize pass's structural rewrites, end to end: SEW-style residuals
(spikes of two layers added, then pooled/flattened into a weighted layer: the weighted op is
distributed over the sum) and average pooling of a convolution's currents (folded into one
strided convolution). Float stays equal to the model; Verilator and Lava match the integer
engine bit for bit."""

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import npuc


class SewResidual(nn.Module):
    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.l1 = snn.Leaky(beta=0.8, reset_mechanism="zero")
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.l2 = snn.Leaky(beta=0.8, reset_mechanism="zero")
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4 if variant != "flat" else 4 * 8 * 8, 3)
        self.l3 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        with torch.no_grad():
            for m in (self.c1, self.c2, self.fc):
                m.weight.mul_(3.0)

    def forward(self, x):  # [T, B, 2, 8, 8]
        m1, m2, m3 = self.l1.init_leaky(), self.l2.init_leaky(), self.l3.init_leaky()
        out = []
        for t in range(x.shape[0]):
            s1, m1 = self.l1(self.c1(x[t]), m1)
            s2, m2 = self.l2(self.c2(s1), m2)
            if self.variant == "flat":
                h = (s1 + s2).flatten(1)
            elif self.variant == "pool_of_sum":
                h = self.pool(s1 + s2).flatten(1)
            else:  # sum of pools
                h = (self.pool(s1) + self.pool(s2)).flatten(1)
            s3, m3 = self.l3(self.fc(h), m3)
            out.append(s3)
        return torch.stack(out)


# verify runs Verilator for fpga and Lava for loihi2
@pytest.mark.parametrize("variant, targets", [pytest.param("flat", ["fpga"], marks=pytest.mark.rtl),
                                              pytest.param("pool_of_sum", ["fpga", "loihi2"],
                                                           marks=[pytest.mark.rtl, pytest.mark.lava]),
                                              pytest.param("sum_of_pools", ["loihi2"], marks=pytest.mark.lava)])
def test_sew_residual_compiles_exactly(variant, targets, tmp_path):
    torch.manual_seed(0)
    model = SewResidual(variant).eval()
    x = np.random.default_rng(0).normal(0.5, 1.0, (5, 3, 2, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert 0.02 < want.mean() < 0.9
    hw = npuc.compile(model, x, target=targets, out=tmp_path / "b")
    assert np.array_equal(hw.simulate(x, "float"), want)
    for target in targets:
        q = hw.quantized(target)
        assert not any(type(n.op).__name__ == "Add" and any(type(q[u].op).__name__ in ("Dense", "Conv2d")
                                                             for u, _ in q.users(n.name)) for n in q)
        got = hw.simulate(x, "int", target=target)
        assert got.sum() > 0 and np.mean(got == want) > 0.8  # 45 output values after 3 quantized layers
    if "fpga" in targets:
        assert hw.verify(x, "rtl").mismatches == 0
    if "loihi2" in targets:
        assert hw.verify(x, "lava").mismatches == 0


class PooledCurrents(nn.Module):
    """snntorch tutorial-style CSNN: Conv2d -> AvgPool2d on the currents -> Leaky."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.lif1 = snn.Leaky(beta=0.8, reset_mechanism="zero", reset_delay=False)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.lif2 = snn.Leaky(beta=0.8, reset_mechanism="zero", reset_delay=False)
        with torch.no_grad():
            self.conv.weight.mul_(3.0)
            self.fc.weight.mul_(3.0)

    def forward(self, x):  # [T, B, 1, 8, 8]
        m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = []
        for t in range(x.shape[0]):
            s1, m1 = self.lif1(self.pool(self.conv(x[t])), m1)
            s2, m2 = self.lif2(self.fc(s1.flatten(1)), m2)
            out.append(s2)
        return torch.stack(out)


@pytest.mark.rtl
@pytest.mark.lava
def test_average_pool_of_conv_currents_folds_into_the_conv(tmp_path):
    torch.manual_seed(1)
    model = PooledCurrents().eval()
    x = np.random.default_rng(1).normal(0.5, 1.0, (5, 3, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert 0.02 < want.mean() < 0.9
    hw = npuc.compile(model, x, target=["fpga", "loihi2"], out=tmp_path / "b")
    assert np.array_equal(hw.simulate(x, "float"), want)
    for target in ("fpga", "loihi2"):
        q = hw.quantized(target)
        convs = [n for n in q if type(n.op).__name__ == "Conv2d"]
        assert len(convs) == 1 and convs[0].op.stride == (2, 2) and convs[0].op.kernel == (4, 4)
        assert not any(type(n.op).__name__ == "SumPool2d" for n in q)
        got = hw.simulate(x, "int", target=target)
        assert got.sum() > 0 and np.mean(got == want) > 0.8
    assert hw.verify(x, "rtl").mismatches == 0
    assert hw.verify(x, "lava").mismatches == 0


@pytest.mark.rtl
@pytest.mark.lava
def test_spikingjelly_sew_block_multistep(tmp_path):
    """SpikingJelly multi-step SEW block: conv-BN-IF, two convs, ADD of spikes, average pool of
    the sum, then Linear into LIF; both targets, 0 mismatches in Verilator and Lava."""
    from spikingjelly.activation_based import functional, layer, neuron

    class SEW(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c0 = layer.Conv2d(2, 8, 3, padding=1, step_mode="m")
            self.bn0 = layer.BatchNorm2d(8, step_mode="m")
            self.n0 = neuron.IFNode(step_mode="m")
            self.c1 = layer.Conv2d(8, 8, 3, padding=1, step_mode="m")
            self.n1 = neuron.IFNode(step_mode="m")
            self.c2 = layer.Conv2d(8, 8, 3, padding=1, step_mode="m")
            self.n2 = neuron.IFNode(step_mode="m")
            self.pool = layer.AvgPool2d(2, step_mode="m")
            self.fc = layer.Linear(8 * 4 * 4, 5, step_mode="m")
            self.n3 = neuron.LIFNode(tau=2.0, step_mode="m")

        def forward(self, x):  # [T, B, 2, 8, 8]
            s0 = self.n0(self.bn0(self.c0(x)))
            s2 = self.n2(self.c2(self.n1(self.c1(s0))))
            return self.n3(self.fc(self.pool(s0 + s2).flatten(2)))

    torch.manual_seed(0)
    model = SEW().eval()
    with torch.no_grad():
        for c in (model.c0, model.c1, model.c2):
            c.weight.mul_(2.5)
        model.fc.weight.mul_(12.0)
        model.bn0.running_mean.uniform_(-0.2, 0.2)
        model.bn0.running_var.uniform_(0.5, 1.5)
    x = np.random.default_rng(0).random((6, 3, 2, 8, 8)).astype(np.float32)
    functional.reset_net(model)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    functional.reset_net(model)
    assert 0.02 < want.mean() < 0.9
    hw = npuc.compile(model, x, target=["fpga", "loihi2"], out=tmp_path / "b")
    assert np.array_equal(hw.simulate(x, "float"), want)
    for target in ("fpga", "loihi2"):
        assert np.mean(hw.simulate(x, "int", target=target) == want) > 0.8
    assert hw.verify(x, "rtl").mismatches == 0
    assert hw.verify(x, "lava").mismatches == 0
