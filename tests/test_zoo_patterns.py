"""Model zoo patterns from the libraries' tutorials: snntorch ``Lapicque`` (the tutorial-2 RC
neuron), global average pooling written as ``spk.mean((-2, -1))`` before the classifier.

Float engine == the library bit for bit; an FPGA build runs with 0 RTL mismatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from models.zoo_models import GlobalAveragePoolNet, LapicqueNet, sew_net
from snntorch import utils

import npuc
from npuc.errors import FrontendError
from npuc.frontends import trace
from npuc.sim import simulate

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


@pytest.mark.parametrize("cnf", ["IAND", "AND"])
def test_sew_spike_logic_is_exact(cnf):
    """``identity * (1 - out)`` and ``identity * out`` of binary spikes become memoryless logic
    neurons; their spikes equal the library's block output value for value."""
    model = sew_net(cnf)
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
    hw = npuc.compile(sew_net("IAND"), x, target="fpga", out=tmp_path / "b")
    result = hw.verify(x, engine="rtl")
    assert result.ok, result.format()
