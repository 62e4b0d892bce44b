"""SpikingJelly's own ``sew_resnet18(cnf='ADD')`` (its model zoo's code, IF neurons, multi-step):
the float engine equals the library at CIFAR size; the FPGA design of the whole network, at a
reduced input size (same layers and weights), verifies in Verilator with 0 mismatches (`--full`).
The Loihi 2 compile at size is in test_lava_zoo.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import npuc
from npuc.builddir import BuildDir
from npuc.frontends import trace
from npuc.sim import simulate


def _model() -> torch.nn.Module:
    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model.sew_resnet import sew_resnet18

    torch.manual_seed(0)
    model = sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(),
                         detach_reset=True).eval()
    functional.set_step_mode(model, "m")
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.mul_(3.0)  # every stage spikes
    return model


def _spikes(steps: int, size: int) -> np.ndarray:
    return (np.random.default_rng(0).random((steps, 2, 3, size, size)) < 0.3).astype(np.float32)


@pytest.mark.slow
def test_float_engine_equals_the_library_at_cifar_size():
    from spikingjelly.activation_based import functional

    model, x = _model(), _spikes(4, 32)
    graph = trace(model, x)
    functional.reset_net(model)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(want).max() > 0
    assert np.array_equal(simulate(graph, x, "float").output, want)


@pytest.mark.full
@pytest.mark.rtl
def test_whole_network_verifies_in_verilator_at_reduced_input(tmp_path):
    from npuc.verify import verify

    model, x = _model(), _spikes(2, 16)
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    result, _, run = verify(BuildDir(hw.path), "rtl", [x[:, :1]])
    assert result.ok, result.format()
    assert run.stats["rtl"]["cycles_per_step"] > 0
