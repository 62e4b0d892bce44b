"""Lava backend vs npuc's golden integer engine, bit for bit, in Lava's fixed_pt CPU simulator.

Random quantized graphs (seeded numpy generators, parameters within the loihi2
profile) are emitted with `npuc.backends.lava.emit`, run with
`npuc.backends.lava.run(..., probe=True)` and compared with
`simulate(g, x, "int", probe=True)`: every neuron's spikes, membrane ``v`` and
current ``i`` (Lava's ``u``) at every step of every sample, and every output.
Each network packs several random cases (parallel chains from one input) and
runs a whole batch back to back, because Lava's cost is per process, not per step.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from npuc.backends import lava as lb
from npuc.ir import QLIF, Encoding, Graph, QInput, QSynapse, ops
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target

pytestmark = pytest.mark.lava
PROF = load_target("loihi2").profile


# -- random quantized parameters (independent of the backend) ---------------------------------------


def grid_weights(rng: np.random.Generator, shape, mode: str, nwb: int) -> np.ndarray:
    """Random weights on Lava's grid for ``num_weight_bits = nwb`` (docs/lava-facts.md section 8):
    mixed-sign values in [-256, 255] with ``9 - nwb`` LSBs zero, excitatory / inhibitory magnitudes
    up to 255 with ``8 - nwb`` LSBs zero."""
    if mode == "mixed":
        nwb = max(nwb, 2)  # 1-bit mixed weights are {-256, 0}, which Lava reads as inhibitory
        lsb = 1 << (9 - nwb)
        w = rng.integers(-256 // lsb, 255 // lsb + 1, shape) * lsb
        if not (w.min() < 0 < w.max()):
            w.flat[0], w.flat[-1] = -lsb, lsb
        return w.astype(np.int64)
    lsb = 1 << (8 - nwb)
    w = rng.integers(0, 255 // lsb + 1, shape) * lsb
    return (-w if mode == "inh" else w).astype(np.int64)


def rand_qlif(rng: np.random.Generator, shape, regime: str, ternary: bool = False) -> QLIF:
    """Neuron parameters: "small" thresholds/biases fire often; "big" ones use the whole
    17-bit threshold, 13-bit bias and exponents up to 7, so u wraps and v saturates."""
    if regime == "big":
        vth, bias, be = int(rng.integers(0, 2**17)), rng.integers(-4096, 4096, shape), int(rng.integers(0, 8))
    else:
        vth, bias, be = int(rng.integers(1, 300)), rng.integers(-30, 30, shape), int(rng.integers(0, 3))
    if rng.random() < 0.5:
        bias = np.array(int(bias.reshape(-1)[0]))
    du = int(rng.choice([0, 1, 4095, int(rng.integers(0, 4096))]))
    dv = int(rng.choice([0, 4096, int(rng.integers(0, 4097))]))
    vth_lo = -int(rng.integers(0, vth + 1)) if ternary else None
    return QLIF(du=du, dv=dv, vth=vth, bias_mant=bias, bias_exp=be, vth_lo=vth_lo)


def lif(q: QLIF, ternary: bool = False) -> ops.LIF:
    kw = {"spike": "ternary", "threshold_lo": -0.5} if ternary else {}
    return ops.LIF(reset="value", **kw, q=q)


def add_dense(g: Graph, rng, name: str, src, n_out: int, n_in: int, e: int = 0, mode: str | None = None) -> None:
    mode = mode or str(rng.choice(["mixed", "exc", "inh"]))
    w = grid_weights(rng, (n_out, n_in), mode, int(rng.integers(1, 9)))
    g.add(name, ops.Dense(w.astype(np.float32), q=QSynapse(w, e)), [src])


# -- the check ----------------------------------------------------------------------------------------


def check(g: Graph, x, tmp_path):
    """Emit, run in Lava with probes, compare with the integer engine; return the golden result."""
    g.profile = PROF
    g.verify()
    ref = simulate(g, x, "int", probe=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.LavaBackendWarning)  # netx coverage is tested elsewhere
        lb.emit(g, tmp_path / "lava", None)
    res = lb.run(tmp_path / "lava", x, probe=True)
    lifs = {n.name for n in g if isinstance(n.op, ops.LIF)}
    cmp = compare({n: p for n, p in ref.probes.items() if n in lifs}, res.probes, engine="lava")
    assert cmp.ok and not cmp.not_observed, cmp.format()
    assert set(cmp.compared) == {f"{n}.{p}" for n in lifs for p in ("spikes", "v", "i")}
    assert res.output_names == ref.output_names
    for name, want, got in zip(ref.output_names, ref.outputs, res.outputs):
        assert np.array_equal(want, got), f"output {name} differs"
    return ref


# -- dense networks ----------------------------------------------------------------------------------


def dense_chains(seed: int, input_kind: str, chains: int = 3, T: int = 9, B: int = 4):
    """One input feeding ``chains`` random Dense->LIF chains of 1-3 layers each."""
    rng = np.random.default_rng(seed)
    g = Graph(f"chains{seed}", num_steps=T)
    n_in = int(rng.integers(3, 9))
    if input_kind == "current":
        bits = int(rng.choice([4, 8, 12]))
        g.add("x", ops.Input((n_in,), encoding=Encoding("current"), layout="TB", q=QInput(0, bits)))
        x = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), (T, B, n_in)).astype(np.float64)
    elif input_kind == "static":  # a static current, encoded over T steps with fractional bits
        g.add("x", ops.Input((n_in,), encoding=Encoding("current"), layout="B", q=QInput(3, 8)))
        x = rng.uniform(-16, 16, (B, n_in))
    elif input_kind == "rate":
        g.add("x", ops.Input((n_in,), encoding=Encoding("rate", bits=8)))
        x = rng.uniform(0, 1, (B, n_in))
    else:
        g.add("x", ops.Input((n_in,), encoding=Encoding("spikes"), layout="TB"))
        x = (rng.random((T, B, n_in)) < 0.4).astype(np.float64)
    for k in range(chains):
        prev, n_prev = "x", n_in
        for layer in range(int(rng.integers(1, 4))):
            n = int(rng.integers(2, 7))
            ternary = bool(rng.random() < 0.3)
            add_dense(g, rng, f"c{k}.fc{layer}", prev, n, n_prev, int(rng.integers(-8, 8)))
            g.add(f"c{k}.lif{layer}", lif(rand_qlif(rng, (n,), str(rng.choice(["small", "big"])), ternary), ternary),
                  [f"c{k}.fc{layer}"])
            prev, n_prev = f"c{k}.lif{layer}", n
        g.add(f"out{k}", ops.Output(index=k), [prev])
    return g, x


@pytest.mark.parametrize("seed, input_kind", [(1, "spikes"), (2, "current"), (3, "static"), (4, "rate"),
                                              (5, "current"), (6, "spikes")])
def test_random_dense_chains(seed, input_kind, tmp_path):
    g, x = dense_chains(seed, input_kind)
    check(g, x, tmp_path)


def test_overflow_regimes(tmp_path):
    """Large inputs, exponents and biases: the int32 input and adder wraps, u's one-correction
    24-bit wrap and v's saturation all happen, and Lava still matches the golden engine."""
    rng = np.random.default_rng(7)
    T, B, n = 8, 3, 12
    g = Graph("overflow", num_steps=T)
    g.add("x", ops.Input((n,), encoding=Encoding("current"), layout="TB", q=QInput(0, 16)))
    w = grid_weights(rng, (6, n), "exc", 8) | 128
    g.add("fc_up", ops.Dense(w.astype(np.float32), q=QSynapse(w, 7)), ["x"])  # up to 12*255*2^15 << 7 > 2^31
    g.add("hot", lif(QLIF(du=0, dv=0, vth=2**17 - 1, bias_mant=np.array(4095), bias_exp=7)), ["fc_up"])
    w2 = grid_weights(rng, (6, n), "mixed", 8)
    g.add("fc_mix", ops.Dense(w2.astype(np.float32), q=QSynapse(w2, -8)), ["x"])
    g.add("mixed", lif(QLIF(du=3000, dv=1, vth=5000, bias_mant=rng.integers(-4096, 4096, 6), bias_exp=5)),
          ["fc_mix"])
    g.add("o", ops.Output(), ["hot"])
    g.add("o2", ops.Output(index=1), ["mixed"])
    x = rng.integers(-(2**15), 2**15, (T, B, n)).astype(np.float64)
    ref = check(g, x, tmp_path)
    events = {k for s in ref.stats.values() for k in s}
    assert {"input_overflow", "u_adder_wrap", "u_overflow", "v_overflow"} <= events, ref.stats


def test_per_token_dense_runs_as_npuc_token_dense(tmp_path):
    """Per-token Dense beyond 2^22 block-diagonal weights (64 tokens) as NpucTokenDense: graded 8-bit
    input currents (int32 dot) and binary spikes, negative and positive weight exponents, and a
    shorter residual path that waits one more step inside the process (DelayDense's queue)."""
    rng = np.random.default_rng(11)
    T, B, N = 6, 2, 64
    g = Graph("tokens", num_steps=T)
    g.add("x", ops.Input((N, 32), encoding=Encoding("current"), layout="TB", q=QInput(0, 8)))
    for name, (o, i), e, src in (("fc_in", (128, 32), -3, "x"), ("fc_out", (48, 128), 2, "hid"),
                                 ("fc_skip", (48, 32), 0, "x")):
        w = grid_weights(rng, (o, i), "mixed", 8)
        g.add(name, ops.Dense(w.astype(np.float32), q=QSynapse(w, e)), [src])
        if name == "fc_in":
            g.add("hid", lif(QLIF(du=4095, dv=800, vth=300, bias_mant=np.array(0))), ["fc_in"])
    g.add("sum", ops.Add(), ["fc_out", "fc_skip"])
    g.add("top", lif(QLIF(du=2000, dv=500, vth=400, bias_mant=np.array(3), bias_exp=2)), ["sum"])
    g.add("o", ops.Output(), ["top"])
    x = rng.integers(-128, 128, (T, B, N, 32)).astype(np.float64)
    ref = check(g, x, tmp_path)
    assert all(ref.probes[n]["spikes"].mean() > 0.02 for n in ("hid", "top"))
    import json

    doc = json.loads((tmp_path / "lava" / "network.json").read_text())
    kinds = {c["node"]: (c["lava_process"], c["lava_delay_steps"]) for c in doc["connections"]}
    assert kinds == {"fc_in": ("NpucTokenDense", 1), "fc_out": ("NpucTokenDense", 1),
                     "fc_skip": ("NpucTokenDense", 2)}, kinds


# -- convolutions, pooling, reshapes ------------------------------------------------------------------


def conv_net(seed: int, graded: bool, T: int = 6, B: int = 3):
    rng = np.random.default_rng(seed)
    g = Graph(f"conv{seed}", num_steps=T)
    C, H, W = int(rng.integers(1, 4)), int(rng.integers(5, 9)), int(rng.integers(5, 9))
    enc = Encoding("current") if graded else Encoding("spikes")
    g.add("x", ops.Input((C, H, W), encoding=enc, layout="TB", q=QInput(0, 6) if graded else None))
    groups = int(rng.choice([1, C]))
    n_out = groups * int(rng.integers(1, 3))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    w = grid_weights(rng, (n_out, C // groups, kh, kw), str(rng.choice(["mixed", "exc", "inh"])), int(rng.integers(2, 9)))
    conv = ops.Conv2d(w.astype(np.float32), stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                      padding=(int(rng.integers(0, 2)), int(rng.integers(0, 2))), dilation=(int(rng.integers(1, 3)), 1),
                      groups=groups, q=QSynapse(w, 0))
    g.add("conv", conv, ["x"])
    g.add("l1", lif(rand_qlif(rng, g["conv"].shape, "small")), ["conv"])
    k = int(rng.integers(1, 3))
    g.add("pool", ops.SumPool2d(kernel=k, stride=k), ["l1"])
    g.add("l2", lif(QLIF(du=4095, dv=int(rng.integers(0, 4097)), vth=int(rng.integers(0, 3)), bias_mant=np.array(0))),
          ["pool"])
    g.add("flat", ops.Reshape((-1,)), ["l2"])
    n = int(np.prod(g["l2"].shape))
    w2 = grid_weights(rng, (5, n), "mixed", 8)
    g.add("fc", ops.Dense(w2.astype(np.float32), q=QSynapse(w2, -2)), ["flat"])
    g.add("l3", lif(rand_qlif(rng, (5,), "small")), ["fc"])
    # a second head reads l1 through a permutation of its axes
    g.add("perm", ops.Permute((0, 2, 1)), ["l1"])
    g.add("flat2", ops.Reshape((-1,)), ["perm"])
    w3 = grid_weights(rng, (4, int(np.prod(g["l1"].shape))), "exc", 7)
    g.add("fc2", ops.Dense(w3.astype(np.float32), q=QSynapse(w3, 0)), ["flat2"])
    g.add("l4", lif(rand_qlif(rng, (4,), "small")), ["fc2"])
    # a flat population reshaped into a (C, H, W) conv input
    g.add("img", ops.Reshape((1, 2, 2)), ["l4"])
    wc = grid_weights(rng, (2, 1, 2, 1), "mixed", 8)
    g.add("conv2", ops.Conv2d(wc.astype(np.float32), q=QSynapse(wc, 0)), ["img"])
    g.add("l5", lif(rand_qlif(rng, g["conv2"].shape, "small")), ["conv2"])
    # a residual block: l6 <- conv_same(l1) + l1 (spikes added without weights, as in SEW-ResNet)
    c1 = g["l1"].shape[0]
    ws = grid_weights(rng, (c1, c1, 3, 3), "mixed", 8)
    g.add("conv_same", ops.Conv2d(ws.astype(np.float32), padding=1, q=QSynapse(ws, 0)), ["l1"])
    g.add("res", ops.Add(), ["conv_same", "l1"])
    g.add("l6", lif(rand_qlif(rng, g["l1"].shape, "small")), ["res"])
    g.add("o", ops.Output(), ["l3"])
    g.add("o2", ops.Output(index=1, decoding="sum", layout="B"), ["l4"])
    g.add("o3", ops.Output(index=2), [("l2", "v")])
    g.add("o4", ops.Output(index=3, layout="BT"), ["l5"])
    g.add("o5", ops.Output(index=4), ["l6"])
    if graded:
        x = rng.integers(-32, 32, (T, B, C, H, W)).astype(np.float64)
    else:
        x = (rng.random((T, B, C, H, W)) < 0.4).astype(np.float64)
    return g, x


@pytest.mark.parametrize("seed, graded", [(11, False), (12, True), (13, True)])
def test_random_conv_pool_reshape(seed, graded, tmp_path):
    g, x = conv_net(seed, graded)
    check(g, x, tmp_path)


def groups_net(seed: int):
    """A depthwise conv and a sum pool over 128-199 channels, spiking."""
    rng = np.random.default_rng(seed)
    T, B, C = 4, 2, int(rng.integers(128, 200))
    g = Graph(f"groups{seed}", num_steps=T)
    g.add("x", ops.Input((C, 4, 4), encoding=Encoding("spikes"), layout="TB"))
    w = grid_weights(rng, (C, 1, 3, 3), "mixed", 8)
    g.add("dw", ops.Conv2d(w.astype(np.float32), padding=1, groups=C, q=QSynapse(w, 0)), ["x"])
    g.add("l1", lif(rand_qlif(rng, g["dw"].shape, "small")), ["dw"])
    g.add("pool", ops.SumPool2d(kernel=2, stride=2), ["l1"])
    g.add("l2", lif(QLIF(du=4095, dv=0, vth=0, bias_mant=np.array(0))), ["pool"])
    g.add("o", ops.Output(), ["l2"])
    x = (rng.random((T, B, C, 4, 4)) < 0.4).astype(np.float64)
    return g, x


@pytest.mark.parametrize("seed", [14, 15])
def test_more_than_127_groups(seed, tmp_path):
    """lava-nc's Conv keeps ``groups`` in int8 (128 wraps to -128 and the Conv outputs zeros or
    raises), so these convolutions must run as unrolled Sparse synapses."""
    g, x = groups_net(seed)
    ref = check(g, x, tmp_path)
    assert ref.probes["l2"]["spikes"].mean() > 0.05 and ref.probes["l1"]["spikes"][:, :, 127:].any()


def test_a_failing_process_model_is_reported_not_hung(monkeypatch, tmp_path):
    """A process model that raises (here lava-nc's Conv with its int8 groups wrapped, as before the
    unrolling) makes the run fail with the model's own message; it used to wait forever in stop()."""
    from npuc.backends.lava import lowering
    from npuc.errors import ToolchainError

    monkeypatch.setattr(lowering, "CONV_PARAM_MAX", 10**9)
    g, x = groups_net(14)
    g.profile = PROF
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.LavaBackendWarning)
        lb.emit(g, tmp_path / "lava", None)
    t0 = time.perf_counter()
    with pytest.raises(ToolchainError, match=r"Lava's simulator failed .* groups = -"):
        lb.run(tmp_path / "lava", x)
    assert time.perf_counter() - t0 < 120


# -- recurrence, residual paths, ternary spikes, direct wires --------------------------------------------


def recurrent_net(seed: int, graded: bool, ternary: bool, T: int = 8, B: int = 4):
    rng = np.random.default_rng(seed)
    g = Graph(f"rec{seed}", num_steps=T)
    n_in = 5
    g.add("x", ops.Input((n_in,), encoding=Encoding("current" if graded else "spikes"), layout="TB",
                         q=QInput(0, 8) if graded else None))
    # self recurrence: l1 <- fc1(x) + rec1(l1 at t-1)
    add_dense(g, rng, "fc1", "x", 4, n_in, int(rng.integers(-3, 2)))
    add_dense(g, rng, "rec1", ("l1", None, 1), 4, 4)
    g.add("sum1", ops.Add(), ["fc1", "rec1"])
    g.add("l1", lif(rand_qlif(rng, (4,), "small", ternary), ternary), ["sum1"])
    # lateral recurrence between populations at the same depth
    add_dense(g, rng, "fc2", "x", 3, n_in)
    add_dense(g, rng, "lat", ("l1", None, 1), 3, 4)
    g.add("sum2", ops.Add(), ["fc2", "lat"])
    g.add("l2", lif(rand_qlif(rng, (3,), "small")), ["sum2"])
    # residual paths of depths 1 (x), 2 (l1 spikes, no weights) and 3 (fc3) into l3: DelayDense delays 2 and 1
    add_dense(g, rng, "fc2b", "l1", 4, 4)
    g.add("l2b", lif(rand_qlif(rng, (4,), "small")), ["fc2b"])
    add_dense(g, rng, "fc3", "l2b", 4, 4)
    add_dense(g, rng, "skip", "x", 4, n_in)
    g.add("sum3", ops.Add(), ["fc3", "skip", "l1"])
    g.add("l3", lif(rand_qlif(rng, (4,), "small")), ["sum3"])
    # the input wired straight into a neuron, and a delayed feed-forward edge
    g.add("l0", lif(rand_qlif(rng, (n_in,), "small")), ["x"])
    add_dense(g, rng, "fcd", ("x", None, 1), 3, n_in)
    g.add("l5", lif(rand_qlif(rng, (3,), "small")), ["fcd"])
    g.add("o", ops.Output(), ["l3"])
    g.add("o2", ops.Output(index=1), ["l0"])
    g.add("o3", ops.Output(index=2), [("l5", "i")])
    if graded:
        x = rng.integers(-128, 128, (T, B, n_in)).astype(np.float64)
    else:
        x = (rng.random((T, B, n_in)) < 0.4).astype(np.float64)
    return g, x


@pytest.mark.parametrize("seed, graded, ternary", [(21, False, True), (22, True, False)])
def test_recurrent_residual_direct(seed, graded, ternary, tmp_path):
    g, x = recurrent_net(seed, graded, ternary)
    spec = lb.lower(_with_profile(g))
    kinds = {c.node: (c.kind, c.hw_delay, c.flush) for c in spec.connections}
    assert kinds["rec1"] == ("dense", 1, True) and kinds["lat"] == ("dense", 1, True)
    assert kinds["skip"] == ("dense", 3, False) and kinds["sum3"] == ("sparse", 2, False)  # delays 2 and 1
    assert kinds["l0"] == ("wire", 0, False) and kinds["fcd"] == ("dense", 1, True)
    ref = check(g, x, tmp_path)
    if ternary:  # probing a subset reads only those neurons (and still pads the batch for ternary state)
        some = lb.run(tmp_path / "lava", x, probe=["l1", "not-a-neuron"])
        assert set(some.probes) == {"l1"}
        assert all(np.array_equal(some.probes["l1"][p], ref.probes["l1"][p]) for p in ("spikes", "v", "i"))


def _with_profile(g: Graph) -> Graph:
    g.profile = PROF
    return g.verify()


def test_ternary_into_conv_and_two_inputs(tmp_path):
    """Ternary (-1/0/+1) spikes into a Conv and a Dense (graded messages); a second graph input
    with a token axis (Dense on the last axis) and a flattened path of unequal depth."""
    rng = np.random.default_rng(31)
    T, B = 7, 3
    g = Graph("tern", num_steps=T)
    g.add("img", ops.Input((2, 5, 4), encoding=Encoding("spikes"), layout="TB"))
    g.add("aux", ops.Input((2, 3), encoding=Encoding("current"), layout="TB", index=1, q=QInput(0, 8)))
    wc = grid_weights(rng, (3, 2, 3, 3), "mixed", 8)
    g.add("conv", ops.Conv2d(wc.astype(np.float32), padding=1, q=QSynapse(wc, 0)), ["img"])
    g.add("t1", lif(QLIF(du=2000, dv=500, vth=60, vth_lo=-40, bias_mant=rng.integers(-20, 20, (3, 5, 4))),
                    ternary=True), ["conv"])
    wt = grid_weights(rng, (3, 3, 2, 2), "exc", 6)
    g.add("conv_t", ops.Conv2d(wt.astype(np.float32), q=QSynapse(wt, 0)), ["t1"])
    g.add("t2", lif(QLIF(du=4095, dv=100, vth=30, vth_lo=-30, bias_mant=np.array(0)), ternary=True), ["conv_t"])
    g.add("flat", ops.Reshape((-1,)), ["t2"])
    w = grid_weights(rng, (3, int(np.prod(g["t2"].shape))), "mixed", 8)
    g.add("fc", ops.Dense(w.astype(np.float32), q=QSynapse(w, -1)), ["flat"])
    g.add("aux_flat", ops.Reshape((-1,)), ["aux"])
    wa = grid_weights(rng, (3, 6), "mixed", 8)
    g.add("fa", ops.Dense(wa.astype(np.float32), q=QSynapse(wa, -1)), ["aux_flat"])
    g.add("sum", ops.Add(), ["fc", "fa"])
    g.add("l3", lif(rand_qlif(rng, (3,), "small")), ["sum"])
    wk = grid_weights(rng, (4, 3), "inh", 5)
    g.add("tok_fc", ops.Dense(wk.astype(np.float32), q=QSynapse(wk, 0)), ["aux"])
    g.add("tok", lif(QLIF(du=100, dv=200, vth=0, bias_mant=np.array(40))), ["tok_fc"])
    g.add("o", ops.Output(), ["l3"])
    g.add("o2", ops.Output(index=1), [("t2", "v")])
    g.add("o3", ops.Output(index=2), ["tok"])
    x = [(rng.random((T, B, 2, 5, 4)) < 0.4).astype(np.float64),
         rng.integers(-128, 128, (T, B, 2, 3)).astype(np.float64)]
    ref = check(g, x, tmp_path)
    assert (ref.probes["t1"]["spikes"] < 0).any() and (ref.probes["t2"]["spikes"] < 0).any()
    # without probes the batch period has no spare step unless an output reads a ternary state (o2 does)
    threads, children = set(threading.enumerate()), _children()
    plain = lb.run(tmp_path / "lava", x)
    assert all(np.array_equal(a, b) for a, b in zip(ref.outputs, plain.outputs))

    # the readers (Extractor, VarWire) leave no thread or process behind (they may take a
    # moment to exit on a loaded machine; a real leak never does). Compared as sets: threads
    # and processes of earlier tests may end meanwhile, which is no leak.
    def left_behind() -> tuple[set, set]:
        return set(threading.enumerate()) - threads, _children() - children

    deadline = time.monotonic() + 10
    while any(left_behind()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left_behind() == (set(), set())


def _children() -> set[int]:
    """This process's child processes, except multiprocessing's resource tracker (started by the
    first shared-memory segment, it lives as long as the process by design)."""
    me = str(os.getpid())
    return {int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _ppid(p) == me and b"resource_tracker" not in _cmdline(p)}


def _ppid(proc: Path) -> str | None:
    try:
        return next(line.split()[1] for line in (proc / "status").read_text().splitlines() if line.startswith("PPid"))
    except (OSError, StopIteration):
        return None


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_build_network_live_processes():
    """build_network returns Lava's own processes; running them by hand gives the golden spikes."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.dense.process import DelayDense
    from lava.proc.dense.process import Dense as LavaDense
    from lava.proc.lif.process import LIFReset, TernaryLIF

    g, x = dense_chains(5, "spikes", chains=1, T=5, B=2)
    g.profile = PROF
    g.verify()
    ref = simulate(g, x, "int", probe=True)
    net = lb.build_network(g, x)
    assert set(net.neurons) == {n.name for n in g if isinstance(n.op, ops.LIF)}
    assert all(isinstance(p, (LIFReset, TernaryLIF)) for p in net.neurons.values())
    assert net.synapses and all(isinstance(s, (LavaDense, DelayDense)) for s in net.synapses.values())
    last = g["out0"].inputs[0].node
    lag = next(p.lag for p in lb.lower(g).populations if p.node == last)
    ((key, port), reader), = net.readers.items()  # the output's Extractor
    assert net.processes[key] is net.neurons[last] and port == "spikes"
    start = next(iter(net.sources.values()))
    try:
        start.run(condition=RunSteps(num_steps=net.steps), run_cfg=_sim_cfg())
        raw = np.stack([reader.receive() for _ in range(net.steps)])
    finally:
        start.stop()
        net.close()
    rows = np.arange(net.batch)[None, :] * net.period + lag + np.arange(net.num_steps)[:, None]
    assert np.array_equal(raw[rows], ref.probes[last]["spikes"])


def _sim_cfg():
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import (
        Extractor,
        PyLoihiExtractorModel,
        PyLoihiVarWireModel,
        VarWire,
    )

    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={
        Extractor: PyLoihiExtractorModel, VarWire: PyLoihiVarWireModel})
