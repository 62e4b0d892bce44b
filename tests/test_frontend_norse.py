"""norse cells stepped with explicit state, and norse's sequence modules, compiled through the
CLI: float engine == norse (spikes, the LIFCell's membrane and current, the sequence modules'
final state), batch 1 and >1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from models import harness
from models import norse_models as M

import npuc
from npuc.frontends import trace
from npuc.ir import LIF
from npuc.sim import simulate

MODELS = Path(__file__).parent / "models" / "norse_models.py"
KINDS = ("default", "offsets", "per_neuron", "python_floats")
T = 25


def _reference(model, x):
    model.eval()
    with torch.no_grad():
        return harness.as_list(model(torch.from_numpy(x)))


@pytest.mark.parametrize("kind", KINDS)
def test_cells_match_norse(tmp_path, capsys, kind):
    torch.manual_seed(11)
    model = getattr(M, f"cells_{kind}")()
    rng = np.random.default_rng(11)
    build = harness.compile_cli(tmp_path, f"{MODELS}:cells_{kind}", model, harness.drive(rng, (T, 2, 10), 3.0), capsys)
    for batch in (1, 3):
        x = harness.drive(rng, (T, batch, 10), 3.0)
        ref = _reference(model, x)
        harness.assert_exact(harness.simulate_cli(tmp_path, build, x, f"x{batch}"), ref, f"{kind} batch {batch}")
    graph = trace(model, x)
    res = simulate(graph, x, probe=True)
    rates = {n.name: harness.spike_rate(res.probes[n.name]["spikes"]) for n in graph.of_type(LIF)}
    assert all(0.02 < r < 0.98 for r in rates.values()), rates


def test_initial_state_is_the_shifted_rest():
    """norse starts LIF cells at v = v_leak: canonically the membrane is v - v_leak = 0."""
    graph = trace(M.cells_offsets(), harness.drive(np.random.default_rng(0), (T, 2, 10)))
    lif = graph["lif"].op
    assert lif.v_init == 0.0 and lif.form == "norse_lif"
    assert np.isclose(float(lif.threshold), 0.8 - (-0.2)) and np.isclose(lif.reset_value, -0.5 - (-0.2))
    assert float(lif.form_args["v_leak"]) == np.float32(-0.2)


@pytest.mark.parametrize("kind", KINDS)
def test_canonical_fields_agree(kind):
    """Measured: agreement 1.0 for every cell (T=40, B=8)."""
    model = getattr(M, f"cells_{kind}")()
    x = harness.drive(np.random.default_rng(4), (40, 8, 10), 3.0)
    agreement = harness.canonical_agreement(trace(model, x), x)
    assert min(agreement.values()) >= 0.999, agreement


def test_sequential_state(tmp_path, capsys):
    torch.manual_seed(12)
    model = M.sequential_state()
    rng = np.random.default_rng(12)
    build = harness.compile_cli(tmp_path, f"{MODELS}:sequential_state", model, harness.drive(rng, (T, 2, 10), 3.0), capsys)
    for batch in (1, 3):
        x = harness.drive(rng, (T, batch, 10), 3.0)
        ref = _reference(model, x)
        harness.assert_exact(harness.simulate_cli(tmp_path, build, x, f"x{batch}"), ref)
        assert 0.02 < harness.spike_rate(ref[0]) < 0.98


class _ZeroStateNet(torch.nn.Module):
    """The first step gets an explicit all-zero state NamedTuple instead of None."""

    def __init__(self, v_leak: float = 0.0) -> None:
        super().__init__()
        import norse.torch as norse

        self.fc = torch.nn.Linear(8, 6)
        self.lif = norse.LIFCell(norse.LIFParameters(v_leak=torch.tensor(v_leak)))

    def forward(self, x):
        import norse.torch as norse

        b = x.shape[1]
        s = norse.LIFFeedForwardState(v=torch.zeros(b, 6), i=torch.zeros(b, 6))
        out = []
        for xt in x:
            z, s = self.lif(self.fc(xt), s)
            out.append(z)
        return torch.stack(out)


def test_explicit_zero_initial_state():
    torch.manual_seed(3)
    model = _ZeroStateNet()
    with torch.no_grad():
        model.fc.weight.mul_(4.0)
    x = (np.random.default_rng(3).random((12, 4, 8)) < 0.5).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert 0.02 < want.mean() < 0.9
    assert np.array_equal(simulate(trace(model, x), x).output, want)
    with pytest.raises(Exception, match=r"differs from its reset state \(v = v_leak != 0\)"):
        trace(_ZeroStateNet(v_leak=0.1), x)


@pytest.mark.parametrize("kind", ("default", "offsets"))
def test_sequence_modules_in_sequential_state(tmp_path, capsys, kind):
    """norse's README network, ``SequentialState(Linear, LIF, Linear, LIF)`` over the whole sequence."""
    torch.manual_seed(13)
    model = getattr(M, f"sequence_mlp_{kind}")()
    rng = np.random.default_rng(13)
    spec = f"{MODELS}:sequence_mlp_{kind}"
    build = harness.compile_cli(tmp_path, spec, model, harness.drive(rng, (T, 2, 10), 3.0), capsys)
    for batch in (1, 3):
        x = harness.drive(rng, (T, batch, 10), 3.0)
        ref = _reference(model, x)
        harness.assert_exact(harness.simulate_cli(tmp_path, build, x, f"x{batch}"), ref, f"{kind} batch {batch}")
    graph = trace(model, x)
    assert [n.meta["source"] for n in graph.of_type(LIF)] == ["norse.LIF", "norse.LIF"]
    res = simulate(graph, x, probe=True)
    rates = {n.name: harness.spike_rate(res.probes[n.name]["spikes"]) for n in graph.of_type(LIF)}
    assert all(0.02 < r < 0.98 for r in rates.values()), rates


def test_sequence_modules_and_their_final_state(tmp_path, capsys):
    """LIF -> IAF -> LI called directly; the LIF's returned final state (v, i) is an output."""
    torch.manual_seed(14)
    model = M.sequence_layers()
    rng = np.random.default_rng(14)
    build = harness.compile_cli(tmp_path, f"{MODELS}:sequence_layers", model, harness.drive(rng, (T, 2, 10), 3.0),
                                capsys)
    for batch in (1, 3):
        x = harness.drive(rng, (T, batch, 10), 3.0)
        ref = _reference(model, x)
        assert [r.shape for r in ref] == [(T, batch, 12), (T, batch, 4), (batch, 20), (batch, 20)]
        harness.assert_exact(harness.simulate_cli(tmp_path, build, x, f"x{batch}"), ref, f"batch {batch}")
    assert 0.02 < harness.spike_rate(ref[0]) < 0.98 and np.abs(ref[1]).max() > 0.01
    assert np.unique(ref[2]).size > 2 and np.abs(ref[3]).max() > 0  # the final state is not the rest/reset value



@pytest.mark.parametrize("target, engine", [pytest.param("loihi2", "lava", marks=pytest.mark.lava),
                                            pytest.param("fpga", "rtl", marks=pytest.mark.rtl)])
def test_sequence_mlp_hardware_has_no_mismatches(tmp_path, target, engine):
    """The README network with v_leak, v_reset != 0, on one sample: 0 mismatches against the integer engine."""
    torch.manual_seed(13)
    x = harness.drive(np.random.default_rng(16), (T, 1, 10), 3.0)
    hw = npuc.compile(M.sequence_mlp_offsets(), x, target=target, out=tmp_path / "b")
    result = hw.verify(x, engine=engine)
    assert result.ok, result.format()
