"""Models whose output is a classifier's logits (synapse currents, no neuron after the last
Linear), and library blocks built of other modules, as users write them:

* an snntorch MLP stepping ``fc2(lif(fc1(x[t])))`` and stacking the logits;
* SpikingJelly's own SEW-ResNet ``BasicBlock`` (``spikingjelly.activation_based.model.sew_resnet``,
  with a strided downsample) between a stem and ``avgpool -> flatten -> fc`` logits, the head
  of ``sew_resnet18``.

The float engine equals the library's forward bit for bit; the integer engine reads the logits
through a current readout (`npuc.passes.readout.insert_current_readouts`); RTL and Lava agree
with it exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from models.zoo_models import spread_batchnorm

import npuc
from npuc.builddir import BuildDir
from npuc.sim import simulate


class LogitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import snntorch as snn

        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        return torch.stack([self.fc2(self.lif(self.fc1(x[t]))) for t in range(x.shape[0])])


class MiniSEWResNet(nn.Module):
    """sew_resnet18's structure at toy size: conv stem, one library BasicBlock with a strided
    1x1 downsample, global average pool, flatten, fc logits (multi-step, [T, B, C, H, W])."""

    def __init__(self, cnf: str = "ADD") -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
        from spikingjelly.activation_based.model.sew_resnet import BasicBlock

        self.stem = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
                                  neuron.IFNode(surrogate_function=surrogate.ATan()))
        down = nn.Sequential(layer.Conv2d(8, 16, 1, stride=2, bias=False), layer.BatchNorm2d(16))
        self.block = BasicBlock(8, 16, stride=2, downsample=down, cnf=cnf, spiking_neuron=neuron.IFNode,
                                surrogate_function=surrogate.ATan(), detach_reset=True)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = layer.Linear(16, 10)
        functional.set_step_mode(self, "m")

    def forward(self, x):
        x = self.avgpool(self.block(self.stem(x)))
        return self.fc(torch.flatten(x, 2))


def _mini_sew(cnf: str) -> MiniSEWResNet:
    torch.manual_seed(0)
    model = MiniSEWResNet(cnf).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.mul_(3.0)  # every stage spikes
        spread_batchnorm(model, 0.2)
    return model


def _reset(model) -> None:
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


@pytest.fixture(scope="module")
def mlp_case():
    torch.manual_seed(0)
    return LogitsMLP().eval(), np.random.default_rng(0).random((6, 3, 8)).astype(np.float32) * 3


def test_logits_output_float_engine_is_the_forward_and_reads_through_a_current_readout(mlp_case, tmp_path):
    model, x = mlp_case
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(hw.simulate(x, "float"), want)
    q = BuildDir(hw.path).int_graph("fpga")
    readouts = [n for n in q if n.meta.get("current_readout")]
    assert len(readouts) == 1 and readouts[0].op.alpha_i is not None
    # the integer logits are the float ones in the readout's current units
    ints = hw.simulate(x, "int")
    scale = float(np.abs(ints).max() / np.abs(want).max())
    assert np.abs(ints / scale - want).max() < 0.02 * np.abs(want).max()


@pytest.mark.rtl
@pytest.mark.lava
def test_logits_output_has_no_rtl_or_lava_mismatches(mlp_case, tmp_path):
    model, x = mlp_case
    hw = npuc.compile(model, x, target=["loihi2", "fpga"], out=tmp_path / "b")
    for engine in ("rtl", "lava"):
        result = hw.verify(x, engine=engine)
        assert result.ok, result.format()


@pytest.mark.parametrize("cnf", ["ADD", "IAND"])
def test_spikingjelly_sew_basic_block_is_traced_through_and_exact(cnf):
    model = _mini_sew(cnf)
    x = (np.random.default_rng(1).random((4, 2, 2, 8, 8)) < 0.4).astype(np.float32)
    _reset(model)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    _reset(model)
    graph = npuc.frontends.trace(model, x)
    got = simulate(graph, x, "float")
    np.testing.assert_array_equal(got.output, want)
    block_nodes = [n.name for n in graph if n.name.startswith("block.")]
    assert any(n.startswith("block.downsample") for n in block_nodes), block_nodes
    for node in ("stem.2", "block.sn1", "block.sn2", "block.downsample_sn"):
        assert simulate(graph, x, "float", probe=True).probes[node]["spikes"].any(), node


@pytest.mark.rtl
def test_spikingjelly_sew_basic_block_has_no_rtl_mismatches(tmp_path):
    model = _mini_sew("ADD")
    x = (np.random.default_rng(1).random((4, 2, 2, 8, 8)) < 0.4).astype(np.float32)
    _reset(model)
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    result = hw.verify(x[:, :1], engine="rtl")
    assert result.ok, result.format()
