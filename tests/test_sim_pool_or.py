"""A max pool of spikes as the loihi lowering writes it (a window count, then a stateless OR
neuron) run as one node by the integer engine (`int_kernels.pool_or`) against the two nodes it
replaces (values and overflow counters) and against a numpy window sum fed to the Python-int
neuron reference; the pairs it must leave alone (a neuron with state, a rule that is not a count
threshold, overflow in the count, probes, a read membrane)."""

import dataclasses

import numpy as np
import pytest
from reference import lif_int
from test_sim_fast import FPGA, LOIHI

from npuc.ir import LIF, QLIF, Conv2d, Encoding, Graph, Input, Output, QInput, QSynapse
from npuc.sim import int_kernels, simulate


def _stateless_q(prof, vth: int, bias=0, bias_exp: int = 0, **kw) -> QLIF:
    """u and v decaying fully every step (multipliers 0)."""
    D = prof.decay_unity
    return QLIF(du=D - prof.du_offset, dv=D - prof.dv_offset, vth=vth, bias_mant=bias, bias_exp=bias_exp, reset_value=0,
                v_init=0, **kw)


def pool_graph(prof, c: int, hw: tuple[int, int], k: int, weight: int, or_q: QLIF, read_v: bool = False) -> Graph:
    """Currents -> a stateless source neuron (spikes where the current is 2) -> window count
    (uniform depthwise weights, stride = kernel) -> OR neuron -> outputs."""
    g = Graph("pool_or")
    g.add("x", Input((c, *hw), layout="TB", encoding=Encoding("current"), q=QInput(0, 32)))
    g.add("src", LIF(alpha=0.0, threshold=1.0, reset="value", q=_stateless_q(prof, 1)), ["x"])
    w = np.full((c, 1, k, k), weight, dtype=np.int64)
    g.add("count", Conv2d(w.astype(np.float32), stride=k, groups=c, q=QSynapse(w, 0)), ["src"])
    g.add("or", LIF(alpha=0.0, threshold=0.5, reset="value", q=or_q), ["count"])
    g.add("o", Output(index=0), ["or"])
    if read_v:
        g.add("ov", Output(index=1), [("or", "v")])
    g.profile = prof
    return g.verify()


def spikes(rng, steps: int, batch: int, c: int, hw: tuple[int, int]) -> np.ndarray:
    """Source spikes of every density, with all-zero, all-one and single-spike samples."""
    s = (rng.random((steps, batch, c, *hw)) < rng.random((1, batch, 1, 1, 1))).astype(np.float32)
    s[:, 0] = 0
    s[:, 1 % batch] = 1
    if batch > 2:
        s[:, 2] = 0
        s[:, 2, :, hw[0] // 2, hw[1] // 2] = 1
    return s


def reference(prof, or_op, s: np.ndarray, k: int, weight: int) -> np.ndarray:
    """The OR neuron's spikes from numpy window sums of ``s`` ([T, B, C, H, W]) times the weight."""
    t, b, c, h, w = s.shape
    nh, nw = (h - k) // k + 1, (w - k) // k + 1
    win = s[..., :nh * k, :nw * k].reshape(t, b, c, nh, k, nw, k).sum((4, 6)).astype(np.int64) * weight
    flat = dataclasses.replace(or_op.q, bias_mant=np.asarray(or_op.q.bias_mant).reshape(-1))  # it takes [N] biases
    or_op = dataclasses.replace(or_op, q=flat)
    return lif_int(or_op, prof, win.reshape(t, b, -1))["spikes"].reshape(t, b, c, nh, nw)


def both(graph, x, monkeypatch, **kw):
    """The engine with pairs run as one and with both nodes; asserts equal values and counters;
    returns the first result and how many pairs ran as one."""
    calls = []
    orig = int_kernels.pool_or
    monkeypatch.setattr(int_kernels, "pool_or", lambda *a: calls.append(a) or orig(*a))
    fused = simulate(graph, x, "int", **kw)
    monkeypatch.setattr(int_kernels, "FUSED_POOLS", False)
    plain = simulate(graph, x, "int", **kw)
    monkeypatch.setattr(int_kernels, "FUSED_POOLS", True)
    assert len(fused.outputs) == len(plain.outputs)
    for a, b in zip(fused.outputs, plain.outputs):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert fused.stats == plain.stats
    return fused, len(calls)


@pytest.mark.parametrize("prof", [LOIHI, FPGA], ids=["loihi2", "fpga"])
@pytest.mark.parametrize("k,hw,weight,vth,c0", [
    (2, (7, 9), 128, 64, 1),  # the lowering's OR on loihi2 (odd sizes: a row and a column outside every window)
    (2, (8, 8), 1, 0, 1),
    (3, (9, 10), 1, 3, 4),  # fires from 4 spikes of 9: window sums, not maxima
    (3, (6, 6), 5, 44, 9),  # only a full window
    (2, (4, 4), 1, 9, None),  # never fires
])
def test_pair_equals_both_nodes_and_reference(monkeypatch, prof, k, hw, weight, vth, c0):
    rng = np.random.default_rng(k * 100 + vth)
    steps, batch, c = 3, 5, 2
    or_q = _stateless_q(prof, vth)
    g = pool_graph(prof, c, hw, k, weight, or_q)
    s = spikes(rng, steps, batch, c, hw)
    res, ran = both(g, 2 * s, monkeypatch)
    assert ran == 1
    np.testing.assert_array_equal(res.output, reference(prof, g["or"].op, s, k, weight))
    if c0 is None:
        assert not res.output.any()
    else:
        assert res.output.any() and not res.output.all()


@pytest.mark.parametrize("case", ["per_neuron_bias", "leaky", "delayed_reset", "count_overflow", "probe", "read_v"])
def test_pairs_left_as_two_nodes(monkeypatch, case):
    """Pairs that are not a stateless count threshold, or whose values leave the run, run as the
    two nodes; the results are the same either way."""
    prof = LOIHI
    rng = np.random.default_rng(3)
    k, hw, c, weight = 2, (6, 6), 2, 128
    or_q, kw = _stateless_q(prof, 64), {}
    if case == "per_neuron_bias":  # some neurons fire without spikes: not one threshold for all
        or_q = _stateless_q(prof, 64, bias=np.where(rng.random((c, 3, 3)) < 0.5, 2500, 0), bias_exp=1)
    elif case == "leaky":
        or_q = dataclasses.replace(or_q, dv=100)
    elif case == "count_overflow":  # 4 spikes of weight 2^17, shifted by 6: beyond u's 24 bits
        weight = 1 << 17
    elif case == "probe":
        kw = {"probe": ["count"]}
    g = pool_graph(prof, c, hw, k, weight, or_q, read_v=case == "read_v")
    if case == "delayed_reset":
        g.replace_op("or", dataclasses.replace(g["or"].op, reset_timing="delayed"))
    s = spikes(rng, 3, 4, c, hw)
    res, ran = both(g, 2 * s, monkeypatch, **kw)
    assert ran == 0
    if case == "count_overflow":
        assert res.stats["or"]["u_overflow"] > 0
    if case in ("per_neuron_bias", "leaky", "delayed_reset"):
        np.testing.assert_array_equal(res.output, reference(prof, g["or"].op, s, k, weight))


@pytest.mark.lava
def test_spikingjelly_csnn_pools_as_pairs_equal_lava(tmp_path, monkeypatch):
    """The SpikingJelly conv_fashion_mnist CSNN (two max pools of IF spikes, `zoo.sj_csnn`) compiled
    for Loihi 2: the integer engine's outputs with both pools run as pairs (no probes: probed
    pairs run as two nodes) equal Lava's fixed_pt run."""
    from models import zoo_models as zoo

    import npuc
    from npuc.backends import run_engine
    from npuc.builddir import BuildDir

    calls = []
    orig = int_kernels.pool_or
    monkeypatch.setattr(int_kernels, "pool_or", lambda *a: calls.append(a) or orig(*a))
    x = np.random.default_rng(4).random((3, 1, 28, 28)).astype(np.float32)
    hw = npuc.compile(zoo.sj_csnn(), x, target="loihi2", out=tmp_path / "b")
    ours = simulate(hw.quantized("loihi2"), x, "int")
    assert len(calls) == 2
    lava = run_engine(BuildDir(hw.path), "lava", [x])
    assert len(lava.outputs) == len(ours.outputs) == 1
    np.testing.assert_array_equal(lava.outputs[0], ours.outputs[0])
    assert ours.outputs[0].any()
