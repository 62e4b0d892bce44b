"""snntorch's convolutional tutorial network (tutorials 6/7) at MNIST size, written as the tutorial
writes it (``tests/models/zoo_snntorch.py``): Conv-MaxPool-Leaky twice, then Linear-Leaky, default
subtract reset with ``reset_delay=True``, ``utils.reset``, a loop over ``data[step]`` of
``spikegen.rate`` input. The max pools pool convolution *currents*.

Fast: the float engine equals snntorch bit for bit; ``stock_only`` Loihi 2 refuses the max of
currents in one line. ``lava``: compiled for loihi2 without flags (custom ``NpucNeuron`` processes,
listed in the report), 0 mismatches in Lava. ``rtl``: 0 mismatches in Verilator at 28x28.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models.zoo_snntorch import NUM_STEPS, rate_images, spiking_csnn

import npuc
from npuc.errors import PassError
from npuc.frontends import trace
from npuc.sim import simulate


def _model(small: bool = False) -> torch.nn.Module:
    return spiking_csnn(small)


def _data(batch: int, seed: int = 1, steps: int = NUM_STEPS) -> torch.Tensor:
    return rate_images(batch, seed, steps)


def test_float_engine_equals_snntorch():
    model = _model()
    x = _data(2, steps=12)
    with torch.no_grad():
        spk, mem = model(x)
    res = simulate(trace(model, x[:, :2].numpy()), x.numpy(), "float", probe=True)
    assert np.array_equal(res.outputs[0], spk.numpy()) and np.array_equal(res.outputs[1], mem.numpy())
    assert 0.05 < float(spk.mean()) < 0.95
    for node in ("net.2", "net.5"):  # both max-pooled layers spike
        assert res.probes[node]["spikes"].any()


def test_stock_only_loihi2_refuses_max_of_currents(tmp_path):
    model = _model()
    with pytest.raises(PassError, match=r"max pool 'net.1' pools currents from 'net.0'.*drop stock_only"):
        npuc.compile(model, _data(1, steps=4), target="loihi2:stock_only=1", out=tmp_path / "b")


@pytest.mark.lava
def test_loihi2_custom_processes_zero_mismatches(tmp_path):
    model = _model()
    x = _data(2)
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    custom = hw.report()["targets"]["loihi2"]["custom_processes"]
    assert [c["node"] for c in custom] == ["net.2", "net.5", "net.8"]
    assert any("max pool 'net.1'" in n for n in custom[0]["needs"])
    assert any("reset 'subtract'" in n for n in custom[2]["needs"])
    result = hw.verify(x, engine="lava")
    assert result.ok and result.mismatches == 0, result.format()
    assert hw.simulate(x, engine="int")[0].any()


@pytest.mark.rtl
def test_fpga_zero_mismatches_at_28x28(tmp_path):
    """The tutorial's widths (12 and 64 channels) at MNIST size; T=6 keeps Verilator near a minute
    (T=25 was measured too: 0 mismatches in 138,600 values, 209 s)."""
    model = _model()
    x = _data(1, steps=6)
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    result = hw.verify(x, engine="rtl")
    assert result.ok and result.mismatches == 0, result.format()
    assert hw.simulate(x, engine="int")[0].any()


@pytest.mark.lava
def test_default_recurrent_leaky_compiles_for_loihi2_without_flags(tmp_path):
    """snntorch's default reset (subtract, reset_delay=True) in an RLeaky loop: custom processes on
    Loihi 2, the recurrent Dense between them, 0 mismatches."""
    from models import snntorch_models as M
    from models.harness import drive

    torch.manual_seed(4)
    model = M.rleaky_linear_subtract_delay()
    with torch.no_grad():
        model.fc1.weight.mul_(3.0)
    x = drive(np.random.default_rng(4), (M.T, 2, M.N_IN))
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    assert len(hw.report()["targets"]["loihi2"]["custom_processes"]) == 2
    result = hw.verify(x, engine="lava")
    assert result.ok and result.mismatches == 0, result.format()
    spikes = hw.simulate(x, engine="int")[0]
    assert 0 < (spikes != 0).mean() < 1
