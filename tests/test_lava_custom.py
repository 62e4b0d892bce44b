"""npuc's custom Lava neuron process (``NpucNeuron``) vs the golden integer engine, bit for bit.

Neurons lava-nc's stock processes cannot compute exactly (subtract and delayed resets, ``>=``
compares, multi-level spikes, reset values, membrane floors, initial membranes, a max pool of
convolution currents) are emitted as a custom Process with its own fixed_pt ProcessModel.
Random quantized graphs exercise every feature combination in Lava's simulator (``check``
compares every neuron's spikes, ``v`` and ``i`` at every step, and every output).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_lava_equivalence import check, grid_weights, rand_qlif

from npuc.ir import QLIF, Encoding, Graph, QInput, QSynapse, ops

pytestmark = pytest.mark.lava


def rand_custom(rng: np.random.Generator, shape, regime: str, per_neuron: bool = False) -> ops.LIF:
    """A LIF with random non-stock features and matching integer parameters (``per_neuron``: a
    random decay per neuron for v, and for u in about half of the neurons' populations)."""
    spike = str(rng.choice(["binary", "ternary", "multilevel"]))
    compare = "ge" if spike == "multilevel" else str(rng.choice(["gt", "ge"]))
    reset = str(rng.choice(["subtract", "value", "none"]))
    timing = str(rng.choice(["same", "delayed", "delayed_charge"]))
    q = rand_qlif(rng, shape, regime, ternary=spike == "ternary")
    vth = max(q.vth, 1)
    scale = vth << 6
    kw: dict = {}
    if spike == "ternary":
        kw["threshold_lo"] = -0.5
    if spike == "multilevel":
        kw["levels"] = None if rng.random() < 0.5 else int(rng.integers(2, 6))
    q = QLIF(du=q.du, dv=q.dv, vth=vth, bias_mant=q.bias_mant, bias_exp=q.bias_exp, vth_lo=q.vth_lo,
             reset_value=int(rng.integers(-scale, scale // 2 + 1)) if reset == "value" and rng.random() < 0.5 else 0,
             v_min=-rng.integers(0, 3 * scale, shape) if rng.random() < 0.3 else None,
             v_init=int(rng.integers(-scale, scale)) if rng.random() < 0.3 else 0)
    if per_neuron:
        dv = rng.integers(0, 4097, shape)
        du = rng.integers(0, 4096, shape) if rng.random() < 0.5 else q.du
        q = QLIF(**{**q.__dict__, "du": du, "dv": dv})
        assert q.per_neuron_decay
    return ops.LIF(reset=reset, reset_timing=timing, compare=compare, spike=spike, q=q, **kw)


def custom_chains(seed: int, T: int = 10, B: int = 3, chains: int = 4, per_neuron: bool = False):
    """One spike input into ``chains`` Dense -> custom LIF -> Dense -> custom LIF chains (the second
    layer reads the first's binary, ternary or graded multi-level spikes)."""
    rng = np.random.default_rng(seed)
    g = Graph(f"custom{seed}", num_steps=T)
    n_in = int(rng.integers(4, 9))
    g.add("x", ops.Input((n_in,), encoding=Encoding("spikes"), layout="TB"))
    for k in range(chains):
        prev, n_prev = "x", n_in
        for layer in range(2):
            n = int(rng.integers(2, 7))
            w = grid_weights(rng, (n, n_prev), str(rng.choice(["mixed", "exc"])), int(rng.integers(4, 9)))
            g.add(f"c{k}.fc{layer}", ops.Dense(w.astype(np.float32), q=QSynapse(w, int(rng.integers(-2, 4)))), [prev])
            g.add(f"c{k}.lif{layer}", rand_custom(rng, (n,), "small", per_neuron), [f"c{k}.fc{layer}"])
            prev, n_prev = f"c{k}.lif{layer}", n
        g.add(f"out{k}", ops.Output(index=k), [prev])
    x = (rng.random((T, B, n_in)) < 0.5).astype(np.float64)
    return g, x


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_random_custom_neurons(seed, tmp_path):
    g, x = custom_chains(seed)
    check(g, x, tmp_path)


@pytest.mark.parametrize("seed", [34, 35])
def test_random_per_neuron_decays(seed, tmp_path):
    """A decay per neuron (dv vectors, and du vectors in about half of the populations) on top of the
    random features: NpucNeuron's vector du / dv equal the integer engine's per-neuron decays."""
    g, x = custom_chains(seed, per_neuron=True)
    assert any(isinstance(n.op.q.du, np.ndarray) for n in g.of_type(ops.LIF))
    ref = check(g, x, tmp_path)
    assert any(ref.probes[n.name]["spikes"].any() for n in g.of_type(ops.LIF))


def maxpool_net(seed: int, graded: bool, T: int = 8, B: int = 3):
    """Conv -> MaxPool2d of its currents -> custom LIF (snntorch's subtract reset) -> Dense -> LIF."""
    rng = np.random.default_rng(seed)
    g = Graph(f"maxpool{seed}", num_steps=T)
    C, H, W = 2, int(rng.integers(7, 11)), int(rng.integers(7, 11))
    enc = Encoding("current") if graded else Encoding("spikes")
    g.add("x", ops.Input((C, H, W), encoding=enc, layout="TB", q=QInput(0, 6) if graded else None))
    w = grid_weights(rng, (3, C, 3, 3), "mixed", 8)
    g.add("conv", ops.Conv2d(w.astype(np.float32), padding=int(rng.integers(0, 2)), q=QSynapse(w, 0)), ["x"])
    k = int(rng.integers(2, 4))
    g.add("pool", ops.MaxPool2d(k, stride=int(rng.integers(1, k + 1)), padding=int(rng.integers(0, k // 2 + 1))), ["conv"])
    q1 = rand_qlif(rng, (), "small")
    g.add("l1", ops.LIF(reset="subtract", reset_timing="delayed", q=QLIF(du=4095, dv=q1.dv, vth=max(q1.vth, 1),
                                                                      bias_mant=q1.bias_mant, bias_exp=0)), ["pool"])
    g.add("flat", ops.Reshape((-1,)), ["l1"])
    n = int(np.prod(g["l1"].shape))
    w2 = grid_weights(rng, (5, n), "mixed", 8)
    g.add("fc", ops.Dense(w2.astype(np.float32), q=QSynapse(w2, -1)), ["flat"])
    g.add("l2", ops.LIF(reset="subtract", reset_timing="delayed", q=rand_qlif(rng, (5,), "small")), ["fc"])
    g.add("o", ops.Output(), ["l2"])
    g.add("o2", ops.Output(index=1), [("l1", "v")])
    if graded:
        x = rng.integers(-32, 32, (T, B, C, H, W)).astype(np.float64)
    else:
        x = (rng.random((T, B, C, H, W)) < 0.4).astype(np.float64)
    return g, x


@pytest.mark.parametrize("seed, graded", [(41, False), (42, True)])
def test_maxpool_of_conv_currents(seed, graded, tmp_path):
    g, x = maxpool_net(seed, graded)
    ref = check(g, x, tmp_path)
    assert ref.probes["l1"]["spikes"].any()


@pytest.mark.parametrize("name", ["dense_iaf", "squeeze_b1"])
def test_sinabs_multispike_compiles_for_loihi2_without_flags(name, tmp_path):
    """sinabs' default MultiSpike (floor(v / theta) spikes per step, >=, subtract reset): graded
    payloads out of NpucNeuron processes, 0 mismatches against the integer engine."""
    import torch
    from models import sinabs_models as M

    import npuc

    torch.manual_seed(0)
    model = getattr(M, name)()
    shape = (1, M.T, 2, 6, 6) if "squeeze" in name else (2, M.T, 33)
    x = np.random.default_rng(0).uniform(0, 8, shape).astype("f4")  # strong enough for several spikes per step
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    custom = hw.report()["targets"]["loihi2"]["custom_processes"]
    assert any("multilevel spikes" in c["needs"][0] for c in custom)
    result = hw.verify(x, engine="lava")
    assert result.ok and result.mismatches == 0, result.format()
    g = hw.quantized()
    spikes = hw.simulate(x, engine="int", probe=True)
    assert any(int(np.max(spikes.probes[n.name]["spikes"])) > 1 for n in g.of_type(ops.LIF)), "no graded spike > 1"
