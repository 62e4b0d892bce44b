"""Model zoo: snntorch ``Alpha`` neurons, as snntorch's docs use them (tests/models/alpha_models.py).

The float engine equals snntorch's forward bit for bit; the integer semantics (a CUBA LIF with
``charge="previous"``, see `npuc.ir.ops.LIF`) follow the same dynamics; the builds run with 0
mismatches in Verilator and in Lava (npuc's custom neuron process)."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn as nn
from models.alpha_models import AlphaMLP, alpha_mlp, alpha_shd, alpha_shd_small

import npuc
from npuc.errors import NpucError
from npuc.frontends import trace
from npuc.ir import LIF
from npuc.sim import simulate


def _spikes(steps: int, batch: int, n: int, p: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, batch, n)) < p).astype(np.float32)


def _per_neuron() -> nn.Module:
    """Per-neuron (tensor) alpha and beta, as a model with learned decays stores them."""
    m = alpha_mlp()
    g = torch.Generator().manual_seed(1)
    m.lif1 = snn.Alpha(alpha=0.85 + 0.1 * torch.rand(24, generator=g), beta=0.5 + 0.3 * torch.rand(24, generator=g))
    return m


MODELS = {
    "mlp-zero": (alpha_mlp, lambda: _spikes(40, 8, 16, 0.2)),
    "mlp-none": (lambda: alpha_mlp("none"), lambda: _spikes(40, 8, 16, 0.2)),
    "mlp-per-neuron": (_per_neuron, lambda: _spikes(40, 8, 16, 0.2)),
    "shd-700-128-20": (alpha_shd, lambda: _spikes(50, 8, 700, 0.05)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_float_engine_equals_snntorch_bit_for_bit(name):
    make, data = MODELS[name]
    model, x = make(), data()
    with torch.no_grad():
        want = [w.numpy() for w in model(torch.from_numpy(x))]
    res = simulate(trace(model, x), x, "float")
    assert len(res.outputs) == 2
    for got, ref in zip(res.outputs, want):
        assert np.array_equal(got, ref)
    assert 0.0 < want[0].mean() < 0.5  # the output layer spikes: a real check of the reset


def test_states_returned_by_alpha_are_snntorchs():
    """With ``output=True`` / explicit state the module returns ``spk, syn_exc, syn_inh, mem``:
    ``syn_exc`` is the LIF's current port, ``mem`` its membrane."""
    model, x = alpha_mlp(), _spikes(30, 4, 16, 0.2)
    g = trace(model, x)
    res = simulate(g, x, "float", probe=True)
    lif1 = model.lif1
    syn_exc, syn_inh, mem = lif1.init_alpha()
    exc, mems = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            _, syn_exc, syn_inh, mem = lif1(model.fc1(torch.from_numpy(x[t])), syn_exc, syn_inh, mem)
            exc.append(syn_exc.numpy())
            mems.append(mem.numpy())
    assert np.array_equal(res.probes["lif1"]["i"], np.stack(exc))
    assert np.array_equal(res.probes["lif1"]["v"], np.stack(mems))


@pytest.mark.parametrize("name", ["mlp-zero", "mlp-none", "shd-700-128-20"])
def test_canonical_fields_describe_the_same_dynamics(name):
    """The canonical fields (``form="npuc"``: ``mem = beta mem + tau (alpha - beta) syn_exc_{t-1}``)
    reproduce the library's spikes up to float32 rounding."""
    make, data = MODELS[name]
    model, x = make(), data()
    g = trace(model, x)
    ref = simulate(g, x, "float", probe=True).probes
    for node in g:
        if isinstance(node.op, LIF):
            assert node.op.charge == "previous" and node.op.form == "snntorch_alpha"
            g.replace_op(node.name, node.op.replace(form="npuc", form_args={}))
    got = simulate(g, x, "float", probe=True).probes
    for node in ref:
        if "spikes" in ref[node]:
            agree = float(np.mean(ref[node]["spikes"] == got[node]["spikes"]))
            assert agree > 0.995, (node, agree)
            assert np.allclose(ref[node]["v"], got[node]["v"], atol=1e-3), node


@pytest.mark.parametrize("target", ["fpga", "loihi2"])
def test_integer_engine_tracks_the_float_spikes(target, tmp_path):
    """Quantized, the integer engine's spikes agree with the float engine's, and a spike clears
    both the current and the membrane on the next step."""
    x = _spikes(40, 8, 16, 0.2)
    hw = npuc.compile(alpha_mlp(), x, target=target, out=tmp_path / "b")
    f = simulate(hw.graph, x, "float", probe=True).probes
    i = simulate(hw.quantized(), x, "int", probe=True).probes
    for node in ("lif1", "lif2"):
        assert i[node]["spikes"].any()
        agree = float(np.mean(f[node]["spikes"] == i[node]["spikes"]))
        assert agree > 0.97, (node, agree)
        # the current is cleared with the membrane on the step after a spike
        fired = i[node]["spikes"][:-1] != 0
        assert np.all(i[node]["i"][1:][fired] == 0) and np.all(i[node]["v"][1:][fired] == 0)


def test_subtract_reset_is_refused_in_one_line():
    model = AlphaMLP(reset_mechanism="subtract").eval()
    with pytest.raises(NpucError) as e:
        trace(model, _spikes(5, 2, 16, 0.2))
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("lif1", "reset_mechanism='subtract'", "reset_mechanism='zero'"):
        assert part in msg, msg


def test_syn_inh_used_as_a_value_is_refused():
    class ReadsInh(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.lif = snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True, output=True)

        def forward(self, x):
            out = []
            for t in range(x.shape[0]):
                _, _, inh, _ = self.lif(self.fc(x[t]))
                out.append(inh)
            return torch.stack(out)

    with pytest.raises(NpucError, match="syn_inh can only be passed back"):
        trace(ReadsInh().eval(), _spikes(4, 2, 4, 0.5))


def test_nir_export_refuses_the_alpha_neuron():
    from npuc.frontends.nir_export import export_nir

    class Spikes(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 8), snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True))

        def forward(self, x):
            return torch.stack([self.net(x[t]) for t in range(x.shape[0])])

    g = trace(Spikes().eval(), _spikes(5, 2, 16, 0.2))
    with pytest.raises(NpucError, match="alpha neuron"):
        export_nir(g)


@pytest.mark.parametrize("target", ["fpga", "loihi2"])
def test_shd_size_compiles(target, tmp_path):
    x = _spikes(50, 4, 700, 0.05)
    hw = npuc.compile(alpha_shd(), x, target=target, out=tmp_path / "b")
    assert (hw.path / ("rtl" if target == "fpga" else "lava")).is_dir()


HW = [pytest.param("fpga", "rtl", marks=pytest.mark.rtl), pytest.param("loihi2", "lava", marks=pytest.mark.lava)]


@pytest.mark.parametrize("target,engine", HW)
@pytest.mark.parametrize("name", ["mlp-zero", "mlp-none", "shd-small"])
def test_hardware_build_has_no_mismatches(target, engine, name, tmp_path):
    """Verilator, and Lava (its stock LIF cannot charge with the previous current: npuc's custom
    NpucNeuron runs it), against the integer engine."""
    make = {"mlp-zero": alpha_mlp, "mlp-none": lambda: alpha_mlp("none"), "shd-small": alpha_shd_small}[name]
    x = _spikes(20, 2, 40 if name == "shd-small" else 16, 0.25, seed=1)
    hw = npuc.compile(make(), x, target=target, out=tmp_path / "b")
    result = hw.verify(x, engine=engine)
    assert result.ok, result.format()
