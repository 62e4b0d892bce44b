"""The diagonal spiking SSM on Loihi 2: Dense -> LIF without reset, read through its membrane.

The legalize pass turns the reset-free state neuron into a reset-to-0 neuron whose
threshold lies above any membrane it can reach (it provably never fires), the Lava
backend proves the same bound on the integer parameters, and the emitted Lava network
matches the golden integer engine bit for bit (every neuron's spikes, v and u, and the
v readout) in Lava's fixed_pt simulator. SC attention and linear attention keep failing for
loihi2 with the op's name, and so does coincidence attention with stock_only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from models import spikformer_models as SF

import npuc
import npuc.nn as nnn
from npuc.backends.lava.lowering import lower
from npuc.backends.lava.spec import LavaMappingError
from npuc.frontends import trace
from npuc.ir import QLIF, Encoding, Graph, ops
from npuc.passes.base import PassContext, PassError, run_pipeline
from npuc.pipeline import build_passes
from npuc.sim import simulate
from npuc.targets import load_target

pytestmark = pytest.mark.lava
T = 10


class SpikingToSSM(nn.Module):
    """Rate-coded input -> Linear -> LIF spikes -> SpikingSSM (decay 7/8), read through v."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nnn.RateEncoder(T)
        self.fc = nn.Linear(16, 24)
        self.lif = nnn.LIF(alpha=0.9, threshold=1.0, reset="value")
        self.ssm = nnn.SpikingSSM(24, 5, a=0.875)
        with torch.no_grad():
            self.fc.weight.mul_(4.0)

    def forward(self, x):
        return self.ssm(self.lif(self.fc(self.enc(x))))


class CurrentIntegrator(nn.Module):
    """Graded input currents [T, B, 6] -> SpikingSSM with a = 1 (a pure integrator, the
    paper's linear attention gain) -> every step's state [T, B, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.ssm = nnn.SpikingSSM(6, 4, a=1.0)

    def forward(self, x):
        return self.ssm(x)


def _ssm_node(graph: Graph):
    (node,) = [n for n in graph if isinstance(n.op, ops.LIF) and "ssm_state" in n.meta]
    return node


def _check_never_fires(hw, x, float_out):
    q = hw.quantized()
    node = _ssm_node(q)
    op = node.op
    assert op.reset == "value" and op.reset_timing == "same" and op.spike == "binary"
    bound = node.meta["ssm_state"]["membrane_bound"]
    assert float(op.threshold) == pytest.approx(4 * bound, rel=1e-6)
    # the float membrane never comes near the threshold, and the integer neuron never fires
    assert np.abs(float_out).max() <= bound * (1 + 1e-6)
    res = simulate(q, x, "int", probe=[node.name])
    spikes, v = res.probes[node.name]["spikes"], res.probes[node.name]["v"]
    assert not spikes.any()
    assert np.abs(v).max() <= op.q.vth << q.profile.vth_shift
    return q, node, res


def _lava_equal(hw, x, node_name):
    result = hw.verify(x, "lava")
    assert result.ok, result.format()
    assert not result.not_observed, result.not_observed
    assert result.compared.get(f"{node_name}.v", 0) > 0 and result.compared.get(f"{node_name}.spikes", 0) > 0


def test_ssm_after_spiking_layer_runs_bit_exact_in_lava(tmp_path):
    torch.manual_seed(0)
    model = SpikingToSSM()
    x = np.random.default_rng(0).random((6, 16)).astype(np.float32)
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "build")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(hw.simulate(x, "float"), ref)
    q, node, _ = _check_never_fires(hw, x, ref)
    # the bound, computed here: per step at most max_row |W| (binary spikes) + |bias|, geometric in a = 7/8
    w, b = model.ssm.proj.weight.detach().double(), model.ssm.proj.bias.detach().double()
    per_step = float((w.abs().sum(1) + b.abs()).max())
    assert node.meta["ssm_state"]["membrane_bound"] == pytest.approx(per_step * (1 - 0.875**T) / (1 - 0.875), rel=1e-6)
    _lava_equal(hw, x, node.name)


def test_graded_integrator_ssm_runs_bit_exact_in_lava(tmp_path):
    torch.manual_seed(1)
    model = CurrentIntegrator()
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (T, 5, 6)).astype(np.float32)
    with pytest.raises(PassError, match=r"no num_steps to bound it: fix the number of time steps \(--steps"):
        npuc.compile(model, x, target="loihi2:stock_only=1", out=tmp_path / "refused")
    # without stock_only the unbounded reset-free state runs as npuc's custom process instead
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "build", steps=T)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(hw.simulate(x, "float"), ref)
    q, node, res = _check_never_fires(hw, x, ref)
    # integer readout vs float: 8-bit inputs and weights (measured max error ~1% of the range)
    v_float = res.probes[node.name]["v"] * node.op.q.scale
    assert np.abs(v_float - ref).max() < 0.03 * np.abs(ref).max()
    _lava_equal(hw, x, node.name)


# -- refusals ---------------------------------------------------------------------------------------------


def _state_graph(alpha: float, steps: int | None, read_spikes: bool = False) -> Graph:
    g = Graph("ssm", num_steps=steps)
    g.add("x", ops.Input((4,), Encoding("spikes"), layout="TB"))
    g.add("fc", ops.Dense(np.full((3, 4), 0.5, np.float32)), ["x"])
    g.add("h", ops.LIF(alpha=alpha, threshold=1.0, reset="none"), ["fc"])
    g.add("out", ops.Output(), [("h", "v")])
    if read_spikes:
        g.add("spk", ops.Output(index=1), ["h"])
    return g.verify()


def _loihi(names=None):
    return build_passes("loihi2", names)


def test_state_without_decay_or_step_count_is_refused_with_stock_only():
    x = (np.random.default_rng(2).random((T, 3, 4)) < 0.5).astype(np.float32)
    ctx = PassContext(target=load_target("loihi2:stock_only=1"), calibration=[x])
    with pytest.raises(PassError, match=r"neuron 'h' \(LIF without reset.*no num_steps to bound it"):
        run_pipeline(_state_graph(1.0, None), _loihi(["legalize"]), ctx)
    g = run_pipeline(_state_graph(0.5, None), _loihi(["legalize"]), ctx)  # decays: a geometric bound
    assert g["h"].meta["ssm_state"]["membrane_bound"] == pytest.approx(2.0 * 2.0)  # row sum 2, 1 / (1 - 0.5)
    with pytest.raises(PassError, match=r"neuron 'h' uses none reset"):  # its spikes are read: a real reset
        run_pipeline(_state_graph(0.5, T, read_spikes=True), _loihi(["legalize"]), ctx)
    # by default Loihi 2 keeps both as reset-free neurons (npuc's custom process)
    custom = PassContext(target=load_target("loihi2"), calibration=[x])
    for g in (run_pipeline(_state_graph(1.0, None), _loihi(["legalize"]), custom),
              run_pipeline(_state_graph(0.5, T, read_spikes=True), _loihi(["legalize"]), custom)):
        assert g["h"].op.reset == "none" and "ssm_state" not in g["h"].meta


def test_lava_refuses_a_state_whose_integer_bound_reaches_the_threshold():
    x = (np.random.default_rng(3).random((T, 3, 4)) < 0.5).astype(np.float32)
    ctx = PassContext(target=load_target("loihi2"), calibration=[x])
    g = run_pipeline(_state_graph(0.5, T), _loihi(["fold-batchnorm", "legalize", "quantize"]), ctx)
    lower(g)  # fine as quantized
    q: QLIF = g["h"].op.q
    g.replace_op("h", g["h"].op.replace(q=QLIF(**{**q.__dict__, "vth": q.vth // 8})))
    with pytest.raises(LavaMappingError, match=r"node 'h' \(LIF\): SSM state .* beyond its threshold"):
        lower(g)


@pytest.mark.parametrize("op", [ops.StochasticAttention(bits=8, seed=3, seed2=5), ops.LinearAttention(a=0.9)])
def test_attention_and_sc_nodes_have_no_loihi_process(op):
    g = Graph("attn", num_steps=4)
    shape = (3, 4) if isinstance(op, ops.StochasticAttention) else (4,)
    for i, n in enumerate("qkv"):
        g.add(n, ops.Input(shape, Encoding("spikes"), layout="TB", index=i), [])
    g.add("a", op, ["q", "k", "v"])
    g.add("fc", ops.Dense(np.eye(4, dtype=np.float32)), ["a"])
    g.add("lif", ops.LIF(reset="value"), ["fc"])
    g.add("o", ops.Output(), ["lif"])
    x = [(np.random.default_rng(4).random((4, 2, *shape)) < 0.5).astype(np.float32) for _ in range(3)]
    name = type(op).__name__
    with pytest.raises(PassError, match=rf"'a' \({name}\) has no Loihi 2 process"):
        run_pipeline(g.verify(), _loihi(["legalize"]), PassContext(target=load_target("loihi2"), calibration=x))


def test_spikformer_for_stock_loihi2_names_the_attention():
    model = SF.NnSpikformer("and")
    x = np.random.default_rng(5).random((2, 8, 8)).astype(np.float32)
    graph = trace(model, x)
    with pytest.raises(PassError, match=r"'attn' \(SpikeAttention\) has no Loihi 2 process"):
        run_pipeline(graph, _loihi(["legalize"]), PassContext(target=load_target("loihi2:stock_only=1"),
                                                              calibration=[x]))
