"""Max pooling of convolution currents on the FPGA (``npuc_acc_max``), bit-exact against the golden
integer engine in Verilator: overlapping and padded windows, graded and spike inputs, a conv bias
and a negative weight exponent (the max is taken before the shift and the bias, which commute with
it), several lanes in the target (the max-pooled path runs one lane), and a reset in the middle of
a step. The snntorch tutorial network at 28x28 is in tests/test_zoo_snntorch_csnn.py."""

from __future__ import annotations

import numpy as np
import pytest
from rtl_check import rtl_matches_int

from npuc.backends.rtl import emit, lint, rtl_report, run
from npuc.ir import QLIF, Encoding, Graph, QInput, QSynapse, ops
from npuc.targets import load_target

pytestmark = pytest.mark.rtl


def maxpool_net(rng, prof, graded: bool, pool: tuple[int, int, int]) -> Graph:
    wmax = 2 ** (prof.weight_bits - 1)
    vmax = 2 ** (prof.v_bits - 1)
    g = Graph("mp", num_steps=6)
    if graded:
        g.add("x", ops.Input((2, 9, 9), encoding=Encoding("current"), layout="B", q=QInput(frac_bits=5, bits=8)))
    else:
        g.add("x", ops.Input((2, 9, 9), encoding=Encoding("rate", bits=8)))
    w = rng.integers(-wmax, wmax, size=(3, 2, 3, 3))
    g.add("conv", ops.Conv2d(np.zeros((3, 2, 3, 3), np.float32), padding=1,
                             q=QSynapse(w, weight_exp=-1, bias=rng.integers(-40, 40, size=3))), ["x"])
    k, s, p = pool
    g.add("pool", ops.MaxPool2d(k, stride=s, padding=p), ["conv"])
    q = QLIF(du=prof.decay_unity, dv=int(rng.integers(0, prof.decay_unity // 4)), vth=vmax // 64,
             bias_mant=np.array(0))
    g.add("l1", ops.LIF(reset="subtract", reset_timing="delayed", q=q), ["pool"])
    g.add("flat", ops.Reshape((-1,)), ["l1"])
    n = int(np.prod(g["l1"].shape))
    g.add("fc", ops.Dense(np.zeros((5, n), np.float32), q=QSynapse(rng.integers(-wmax, wmax, size=(5, n)), 0)),
          ["flat"])
    g.add("out", ops.LIF(reset="value", q=QLIF(du=prof.decay_unity, dv=200, vth=vmax // 32, bias_mant=np.array(0))),
          ["fc"])
    g.add("o", ops.Output(decoding="sum", layout="B"), ["out"])
    g.add("ov", ops.Output(index=1, layout="B", decoding="last"), [("l1", "v")])
    g.profile = prof
    return g.verify()


@pytest.mark.parametrize("graded, pool, spec", [
    (True, (3, 2, 1), "fpga:lanes=2"),   # overlapping, padded windows
    (False, (2, 2, 0), "fpga"),          # the tutorial's MaxPool2d(2)
])
def test_maxpool_of_conv_currents(graded, pool, spec, tmp_path):
    target = load_target(spec)
    rng = np.random.default_rng(5)
    g = maxpool_net(rng, target.profile, graded, pool)
    out = tmp_path / "rtl"
    emit(g, out, target)
    assert lint(out) == [] and lint(out, probe=True) == []
    x = rng.uniform(-1 if graded else 0, 1, size=(3, 2, 9, 9)).astype(np.float32)
    ref, got = rtl_matches_int(g, out, x, ("l1", "out"))
    assert 0 < ref.probes["l1"]["spikes"].mean() < 1
    rep = rtl_report(g, out, got, yosys=False)
    assert rep["layers"][0]["memory_bits"]["max_pool"] > 0
    cycles = rep["layers"][0]["cycles"]  # the event-driven bound counts the max phase
    assert 0.8 <= cycles["efficiency"] <= 1.02, cycles
    # a reset in the middle of a step leaves no partial sums or pooled values behind
    mid = int(got.stats["rtl"]["layer_cycles"]["l1"][2].min()) // 2
    again = run(out, x, progress=False, reset_check=(2, mid))
    for a, b in zip(ref.outputs, again.outputs):
        np.testing.assert_array_equal(a, b)
