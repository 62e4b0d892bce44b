"""Whole networks through the RTL backend: bit-exact against the golden integer engine,
cycle figures against the event-driven bound, determinism, waves and Yosys synthesis.

Graphs are built by hand with random integer parameters inside the target's
ranges (no quantize pass needed): a dense MLP with a recurrent hidden layer
under the default FPGA profile and under ``fpga:weight_bits=6,state_bits=12,lanes=4``,
and a conv -> max pool -> flatten -> dense network.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import seeded_case
from rtl_check import rtl_matches_int

from npuc.backends.rtl import emit, lint, rtl_report, run
from npuc.ir import QLIF, Encoding, Graph, QInput, QSynapse, ops
from npuc.sim import simulate
from npuc.targets import load_target

pytestmark = pytest.mark.rtl


def _rand_lif(rng, prof, n, **kw) -> ops.LIF:
    d = prof.decay_unity
    vmax = 2 ** (prof.v_bits - 1)
    q = QLIF(du=int(rng.integers(d // 2, d + 1)), dv=int(rng.integers(0, d // 4)),
             vth=int(rng.integers(vmax // 64, vmax // 16)), bias_mant=rng.integers(-vmax // 256, vmax // 256, size=n))
    return ops.LIF(q=q, **kw)


def _dense(rng, prof, n_out, n_in, exp=-2) -> ops.Dense:
    wmax = 2 ** (prof.weight_bits - 1)
    return ops.Dense(np.zeros((n_out, n_in), np.float32), q=QSynapse(rng.integers(-wmax, wmax, size=(n_out, n_in)),
                                                                     weight_exp=exp))


def mlp(rng, target, sizes=(12, 10, 6), steps=10) -> Graph:
    """x -> fc1 -> h (+ recurrent h@t-1 -> rec) -> fc2 -> out; outputs spikes and the output membrane."""
    prof = target.profile
    g = Graph("mlp", num_steps=steps)
    g.add("x", ops.Input((sizes[0],), encoding=Encoding("current"), layout="B", q=QInput(frac_bits=6, bits=8)))
    g.add("fc1", _dense(rng, prof, sizes[1], sizes[0]), ["x"])
    g.add("rec", _dense(rng, prof, sizes[1], sizes[1], exp=0), [("h", "spikes", 1)])
    g.add("sum", ops.Add(), ["fc1", "rec"])
    g.add("h", _rand_lif(rng, prof, sizes[1]), ["sum"])
    g.add("fc2", _dense(rng, prof, sizes[2], sizes[1], exp=0), ["h"])
    g.add("out", _rand_lif(rng, prof, sizes[2], reset="value"), ["fc2"])
    g.add("o", ops.Output(), ["out"])
    g.add("ov", ops.Output(decoding="last", layout="B", index=1), [("out", "v")])
    g.profile = prof
    return g.verify()


def convnet(rng, target) -> Graph:
    prof = target.profile
    wmax = 2 ** (prof.weight_bits - 1)
    g = Graph("cnn", num_steps=6)
    g.add("x", ops.Input((1, 8, 8), encoding=Encoding("current"), layout="B", q=QInput(frac_bits=5, bits=8)))
    g.add("conv", ops.Conv2d(np.zeros((4, 1, 3, 3), np.float32), padding=1,
                             q=QSynapse(rng.integers(-wmax, wmax, size=(4, 1, 3, 3)), weight_exp=-1,
                                        bias=rng.integers(-30, 30, size=4))), ["x"])
    g.add("c", _rand_lif(rng, prof, (4, 8, 8)), ["conv"])
    g.add("pool", ops.MaxPool2d(2), ["c"])
    g.add("flat", ops.Reshape((-1,)), ["pool"])
    g.add("fc", _dense(rng, prof, 10, 64, exp=0), ["flat"])
    g.add("out", _rand_lif(rng, prof, 10), ["fc"])
    g.add("o", ops.Output(decoding="sum", layout="B"), ["out"])
    g.profile = prof
    return g.verify()


def _check(g, out, x, layers):
    assert lint(out) == [] and lint(out, probe=True) == []
    return rtl_matches_int(g, out, x, layers)


@pytest.mark.parametrize("spec", ["fpga", "fpga:weight_bits=6,state_bits=12,lanes=4"])
def test_mlp_with_recurrence(spec, tmp_path):
    g, x = seeded_case(mlp, spec, 3, (5, 12), tmp_path / "rtl")
    ref, got = _check(g, tmp_path / "rtl", x, ("h", "out"))
    assert ref.probes["h"]["spikes"].any() and ref.probes["out"]["spikes"].any()
    # non-probe build streams only the outputs and gives the same answer
    plain = run(tmp_path / "rtl", x, progress=False)
    for a, b in zip(ref.outputs, plain.outputs):
        np.testing.assert_array_equal(a, b)
    rep = rtl_report(g, tmp_path / "rtl", plain, yosys=False)
    for lay in rep["layers"]:
        c = lay["cycles"]
        assert c["measured_mean"] >= lay["neurons"] + c["synapse_mean"]
        assert 0.8 <= c["efficiency"] <= 1.02, (lay["node"], c)


def test_conv_pool_flatten_dense(tmp_path):
    g, x = seeded_case(convnet, "fpga:lanes=2", 7, (3, 1, 8, 8), tmp_path / "rtl")
    ref, got = _check(g, tmp_path / "rtl", x, ("c", "out"))
    assert 0 < ref.probes["c"]["spikes"].mean() < 1
    rep = rtl_report(g, tmp_path / "rtl", got, yosys=False)
    # a reset in the middle of a step (while synapses accumulate) leaves no partial sums behind
    mid = int(got.stats["rtl"]["layer_cycles"]["c"][2].min()) // 2
    again = run(tmp_path / "rtl", x, progress=False, reset_check=(2, mid))
    np.testing.assert_array_equal(again.output, ref.output)
    conv = rep["layers"][0]
    assert conv["paths"][0]["kind"] == "conv" and conv["memory_bits"]["weights"] == 2 * 8 * 2 * 9
    assert rep["layers"][1]["paths"][0]["pool"] == "pool"
    assert rep["total"]["cycles_per_step"] > sum(lay["neurons"] for lay in rep["layers"])


def test_emit_is_deterministic_and_sanitized(tmp_path):
    target = load_target("fpga:lanes=2")
    g = mlp(np.random.default_rng(1), target)
    a = emit(g, tmp_path / "a", target)
    b = emit(g, tmp_path / "b", target)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    again = emit(g, tmp_path / "a", target)  # re-emit replaces the folder in place
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in a]
    # node names with '.', ':', '-' and Verilog keywords become safe, unique identifiers
    h = Graph("syn", num_steps=3)  # 'npuc_syn' is a building block: the top must not take its name
    h.add("wire", ops.Input((4,), encoding=Encoding("current"), q=QInput(0, 8)))
    h.add("assign:1", _dense(np.random.default_rng(0), target.profile, 3, 4), ["wire"])
    h.add("reg.x-1", _rand_lif(np.random.default_rng(0), target.profile, 3), ["assign:1"])
    h.add("always", ops.Output(), ["reg.x-1"])
    h.profile = target.profile
    files = emit(h.verify(), tmp_path / "k", target)
    assert lint(tmp_path / "k", probe=True) == []
    names = {p.name for p in files}
    assert "npuc_syn_top.v" in names and "npuc_syn_l0_reg_x_1.v" in names and "npuc_syn.v" in names


def test_waves_are_written(tmp_path):
    g, x = seeded_case(mlp, "fpga", 5, (1, 3), tmp_path / "rtl", sizes=(3, 2, 2), steps=3)
    got = run(tmp_path / "rtl", x, waves=True, progress=False)
    wave = got.stats["rtl"]["waves"]
    assert wave and (tmp_path / "rtl" / "sim").is_dir()
    text = open(wave, errors="replace").read(4000)
    assert "$var" in text and "out_valid" in text
    for a, b in zip(got.outputs, simulate(g, x, "int").outputs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.yosys
def test_yosys_resources_per_layer(tmp_path):
    target = load_target("fpga")
    g = mlp(np.random.default_rng(2), target, sizes=(4, 3, 2), steps=2)
    emit(g, tmp_path / "rtl", target)
    rep = rtl_report(g, tmp_path / "rtl", None, yosys=True, target="ice40")
    total = rep["total"]["resources"]
    assert total["LUT"] > 0 and total["FF"] > 0
    per_layer = [lay["resources"] for lay in rep["layers"]]
    assert all(r is not None and r["LUT"] > 0 for r in per_layer)
    assert sum(r["LUT"] for r in per_layer) < total["LUT"]  # the top adds encoders, event lists, control
    assert rep["total"]["memory_bits"] > 0
