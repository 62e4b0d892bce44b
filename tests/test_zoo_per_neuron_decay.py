"""Model zoo: a decay learned per neuron (snntorch ``Leaky(beta=<tensor>, learn_beta=True)`` and
``Synaptic(alpha=<tensor>, beta=<tensor>, learn_alpha=True, learn_beta=True)``), as the tutorials
write it (tests/models/zoo_snntorch.py: 64-96-10, decays uniform in [0.5, 0.99]).

The float engine equals snntorch bit for bit; quantization keeps one integer decay per neuron by
the scalar rule (``dv = round(D (1 - beta_n))``); the integer engine applies each neuron's own
decay; the FPGA design reads them from a decay ROM (``npuc_lif``'s ``mu`` / ``mv`` inputs) and Lava runs them in npuc's
``NpucNeuron`` (vector du / dv): 0 mismatches in Verilator and in Lava, without --allow-approx.
norse ``LIFCell`` with per-neuron ``tau_mem_inv`` / ``tau_syn_inv`` tensors takes the same path
(SpikingJelly's ``tau`` is one float per layer)."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from models.snntorch_models import LoopNet
from models.zoo_snntorch import learned_decay_mlp

import npuc
from npuc.backends.rtl import lint
from npuc.frontends import trace
from npuc.ir import LIF, QLIF, Dense, Encoding, Graph, Input, Output, QSynapse
from npuc.sim import simulate
from npuc.targets import load_target

MODELS = {"leaky": lambda: learned_decay_mlp(), "synaptic": lambda: learned_decay_mlp(synaptic=True)}


def _digits_spikes(steps: int = 16, batch: int = 8, seed: int = 0) -> np.ndarray:
    """Rate-coded digits-size input (64 features)."""
    return (np.random.default_rng(seed).random((steps, batch, 64)) < 0.3).astype(np.float32)


@pytest.mark.parametrize("name", list(MODELS))
def test_float_engine_equals_snntorch_bit_for_bit(name):
    model, x = MODELS[name](), _digits_spikes()
    with torch.no_grad():
        want = [w.numpy() for w in model(torch.from_numpy(x))]
    got = simulate(trace(model, x), x, "float").outputs
    assert len(got) == 2
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
    assert 0.0 < want[0].mean() < 0.5  # the output layer spikes


def _expected(decay: torch.Tensor, unity: int, offset: int = 0) -> np.ndarray:
    """The scalar quantization rule, applied to each neuron's float decay (snntorch's stored tensor)."""
    d = decay.detach().numpy().astype(np.float64)
    return np.clip(np.round(unity * (1.0 - d)).astype(np.int64) - offset, 0, unity - offset)


@pytest.mark.parametrize("target", ["fpga", "loihi2"])
@pytest.mark.parametrize("name", list(MODELS))
def test_decays_are_quantized_per_neuron_by_the_scalar_rule(name, target, tmp_path):
    """No --allow-approx: each neuron keeps its own integer decay, and the integer engine's spikes
    track the float engine's."""
    model, x = MODELS[name](), _digits_spikes()
    hw = npuc.compile(model, x, target=target, out=tmp_path / "b")
    prof = load_target(target).profile
    q = {n.name: n.op.q for n in hw.quantized().of_type(LIF)}
    for node, lif in (("lif1", model.lif1), ("lif2", model.lif2)):
        assert isinstance(q[node].dv, np.ndarray) and q[node].per_neuron_decay
        np.testing.assert_array_equal(q[node].dv, _expected(lif.beta, prof.decay_unity))
        if name == "synaptic":
            np.testing.assert_array_equal(q[node].du, _expected(lif.alpha, prof.decay_unity, prof.du_offset))
    f = simulate(hw.graph, x, "float", probe=True).probes
    i = simulate(hw.quantized(), x, "int", probe=True).probes
    for node in ("lif1", "lif2"):
        assert i[node]["spikes"].any()
        # measured 0.946-0.996 (README); the Synaptic net with one (mean) decay per layer: 0.953-0.992
        assert np.mean(f[node]["spikes"] == i[node]["spikes"]) > 0.93, node


def test_equal_per_neuron_decays_stay_one_value(tmp_path):
    """A per-neuron tensor whose values are all equal quantizes to one integer (the scalar hardware)."""
    x = (np.random.default_rng(0).random((12, 4, 10)) < 0.3).astype(np.float32)
    hw = npuc.compile(LoopNet("leaky").eval(), x, target="fpga", out=tmp_path / "b")
    q = hw.quantized()["lif1"].op.q
    assert isinstance(q.dv, int) and not q.per_neuron_decay
    assert not (hw.path / "rtl" / "npuc_vdecay.v").exists()
    assert ".mu(2'sd0), .mv(2'sd0)" in next((hw.path / "rtl").glob("*_l0_lif1.v")).read_text()


def test_integer_engine_applies_each_neurons_decay():
    """A population with a decay vector equals, neuron by neuron, populations with that neuron's
    decay as their one value (every other parameter shared)."""
    rng = np.random.default_rng(3)
    n, n_in, steps, batch = 6, 5, 20, 3
    w = rng.integers(-60, 60, (n, n_in))
    dv, du = rng.integers(0, 4097, n), rng.integers(0, 4096, n)
    x = (rng.random((steps, batch, n_in)) < 0.5).astype(np.float64)

    def run(du_, dv_) -> dict:
        g = Graph("pn", num_steps=steps)
        g.add("x", Input((n_in,), encoding=Encoding("spikes"), layout="TB"))
        g.add("fc", Dense(w.astype(np.float32), q=QSynapse(w, 0)), ["x"])
        q = QLIF(du=du_, dv=dv_, vth=40, bias_mant=np.array(2), bias_exp=1)
        g.add("lif", LIF(reset="subtract", reset_timing="delayed", q=q), ["fc"])
        g.add("o", Output(), ["lif"])
        g.profile = load_target("loihi2").profile
        return simulate(g.verify(), x, "int", probe=True).probes["lif"]

    vec = run(du, dv)
    assert vec["spikes"].any()
    for k in range(n):
        one = run(int(du[k]), int(dv[k]))
        for port in ("spikes", "v", "i"):
            np.testing.assert_array_equal(vec[port][..., k], one[port][..., k], err_msg=f"neuron {k} {port}")


def test_fpga_design_reads_the_decays_from_a_rom(tmp_path):
    """The hidden layer's neuron unit npuc_lif multiplies by its ``mv`` input, fed by ``l0_decay.hex`` (the multipliers
    ``D - dv`` in neuron order); the design is lint-clean."""
    model, x = learned_decay_mlp(), _digits_spikes()
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    rtl = hw.path / "rtl"
    layer = next(rtl.glob("*_l0_lif1.v")).read_text()
    assert ".mv(mv_n)" in layer and "u_decay" in layer and ".VEC_MV(1)" in layer and ".VEC_MU(0)" in layer
    prof = load_target("fpga").profile
    dv = np.asarray(hw.quantized()["lif1"].op.q.dv)
    words = [int(v, 16) for v in (rtl / "mem" / "l0_decay.hex").read_text().split()]
    assert words == list(prof.decay_unity - (dv + prof.dv_offset))
    assert lint(rtl) == []


def test_loihi2_report_names_the_per_neuron_decays(tmp_path):
    """Lava's LIF has one du / dv per population: the neurons run as npuc's NpucNeuron, and the
    build report says that this needs per-neuron decays on the chip."""
    model = learned_decay_mlp()
    # a neuron Lava's LIFReset computes but for its decay vector: that alone makes it custom
    model.lif1 = snn.Leaky(beta=model.lif1.beta.detach().clone(), learn_beta=True, reset_mechanism="zero",
                           reset_delay=False)
    x = _digits_spikes()
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    custom = {c["node"]: c["needs"] for c in hw.report()["targets"]["loihi2"]["custom_processes"]}
    assert len(custom["lif1"]) == 1 and "per-neuron decays" in custom["lif1"][0]
    assert any("per-neuron decays" in n for n in custom["lif2"])


HW = [pytest.param("fpga", "rtl", marks=pytest.mark.rtl), pytest.param("loihi2", "lava", marks=pytest.mark.lava)]


@pytest.mark.parametrize("target,engine", HW)
@pytest.mark.parametrize("name", list(MODELS))
def test_hardware_build_has_no_mismatches(target, engine, name, tmp_path):
    """Verilator (npuc_lif + decay ROM) and Lava (NpucNeuron with du / dv vectors) against the
    integer engine, every layer's spikes, v and i at every step."""
    x = _digits_spikes()
    hw = npuc.compile(MODELS[name](), x, target=target, out=tmp_path / "b")
    result = hw.verify(x[:, :2], engine=engine)
    assert result.ok and result.mismatches == 0, result.format()


class NorsePerNeuronTau(torch.nn.Module):
    """norse ``LIFCell`` (current-based) with a time constant per neuron (``LIFParameters`` tensors of
    ``tau_mem_inv`` and ``tau_syn_inv``), stepped over ``x[t]``: per-neuron dv and du."""

    def __init__(self, n_in: int = 20, n: int = 12) -> None:
        import norse.torch as nt

        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = torch.nn.Linear(n_in, n)
        p = nt.LIFParameters(tau_mem_inv=50.0 + 100.0 * torch.rand(n, generator=g),
                             tau_syn_inv=100.0 + 200.0 * torch.rand(n, generator=g))
        self.lif = nt.LIFCell(p)

    def forward(self, x):
        s, out = None, []
        for t in range(x.shape[0]):
            z, s = self.lif(self.fc(x[t]) * 20.0, s)
            out.append(z)
        return torch.stack(out)


@pytest.mark.parametrize("target,engine", [("fpga", None), ("loihi2", None), *HW])
def test_norse_per_neuron_time_constants(target, engine, tmp_path):
    """norse keeps a time constant per neuron where its parameters are tensors: float exact, one
    integer decay per neuron (v and the current), and (rtl / lava) 0 mismatches."""
    model, x = NorsePerNeuronTau().eval(), (np.random.default_rng(0).random((20, 4, 20)) < 0.3).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(simulate(trace(model, x), x, "float").outputs[0], want) and want.any()
    hw = npuc.compile(model, x, target=target, out=tmp_path / "b")
    q = hw.quantized()["lif"].op.q
    assert isinstance(q.dv, np.ndarray) and isinstance(q.du, np.ndarray)
    assert len(np.unique(q.dv)) > 6 and len(np.unique(q.du)) > 6
    if engine:
        result = hw.verify(x[:, :2], engine=engine)
        assert result.ok and result.mismatches == 0, result.format()
