"""RTL synapse engines, pooling and address remapping against the golden integer engine.

Two designs, each built once and run on two random cases (new weights,
biases and inputs through memory files, same hardware):

* ``graded``: dense engines with 3 lanes (outputs not a multiple of the lanes)
  fed by graded payloads: integer currents, unbounded multi-level spikes,
  ternary (negative) spikes; a recurrent path (delay 1) and a delayed Input
  path summed with feed-forward paths by Add; outputs of v and i.
* ``conv``: conv engines with 4 lanes and 6-bit weights: grouped strided
  padded Conv2d, a Permute then zero-padded SumPool2d (graded counts) into a
  dilated rectangular Conv2d, a dilated strided Conv1d, MaxPool2d (OR) of
  binary spikes, flatten, and a residual Add of two dense paths.

Every neuron layer's spikes, v and i are compared step by step. A third test
draws random conv geometries (channels, groups, kernel, stride, padding,
dilation), random pooling and a random lane count (HDL parameters) per seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from rtl_check import rtl_matches_int

from npuc.backends.rtl import emit, lint
from npuc.ir import QLIF, Encoding, Graph, QInput, QSynapse, ops
from npuc.targets import load_target

pytestmark = pytest.mark.rtl


def _w(rng, prof, shape):
    wmax = 2 ** (prof.weight_bits - 1)
    return rng.integers(-wmax, wmax, size=shape)


def _q(**kw):
    base = dict(du=4096, dv=300, vth=60, bias_mant=np.array(0))
    base.update(kw)
    return QLIF(**base)


def graded_graph(rng, target) -> Graph:
    prof = target.profile
    g = Graph("graded", num_steps=10)
    g.add("x", ops.Input((7,), encoding=Encoding("current"), layout="TB", q=QInput(frac_bits=4, bits=9)))
    g.add("fc1", ops.Dense(np.zeros((5, 7), np.float32), q=QSynapse(_w(rng, prof, (5, 7)), weight_exp=-2,
                                                                    bias=np.array([-300, 255, 0, 17, -1]))), ["x"])
    g.add("m1", ops.LIF(threshold=1.0, compare="ge", spike="multilevel", q=_q(du=1500, vth=90)), ["fc1"])
    g.add("fc2", ops.Dense(np.zeros((4, 5), np.float32), q=QSynapse(_w(rng, prof, (4, 5)), weight_exp=-3)), ["m1"])
    g.add("fcd", ops.Dense(np.zeros((4, 7), np.float32), q=QSynapse(_w(rng, prof, (4, 7)), weight_exp=-1)),
          [("x", None, 1)])
    g.add("sum2", ops.Add(), ["fc2", "fcd"])
    g.add("t1", ops.LIF(threshold=1.0, threshold_lo=-1.0, spike="ternary", reset_timing="delayed",
                        q=_q(vth=120, vth_lo=-90, dv=100, bias_mant=rng.integers(-20, 20, size=4))), ["sum2"])
    g.add("fc3", ops.Dense(np.zeros((6, 4), np.float32), q=QSynapse(_w(rng, prof, (6, 4)), weight_exp=0)), ["t1"])
    g.add("rec", ops.Dense(np.zeros((6, 6), np.float32), q=QSynapse(_w(rng, prof, (6, 6)), weight_exp=0)),
          [("b1", "spikes", 1)])
    g.add("sum3", ops.Add(), ["fc3", "rec"])
    g.add("b1", ops.LIF(reset="value", reset_value=-7.0, q=_q(vth=150, reset_value=-7, dv=700)), ["sum3"])
    g.add("o", ops.Output(), ["b1"])
    g.add("ov", ops.Output(decoding="last", layout="B", index=1), [("t1", "v")])
    g.add("mi", ops.Reshape((5, 1)), [("m1", "i")])
    g.add("oi", ops.Output(index=2), ["mi"])
    g.profile = prof
    return g.verify()


def conv_graph(rng, target) -> Graph:
    prof = target.profile
    g = Graph("convs", num_steps=6)
    g.add("x", ops.Input((2, 7, 9), encoding=Encoding("rate", bits=6), layout="B"))
    g.add("ca", ops.Conv2d(np.zeros((6, 1, 3, 3), np.float32), stride=2, padding=1, groups=2,
                           q=QSynapse(_w(rng, prof, (6, 1, 3, 3)), bias=rng.integers(-9, 9, size=6))), ["x"])
    g.add("la", ops.LIF(q=_q(vth=25, dv=50)), ["ca"])  # (6, 4, 5)
    g.add("perm", ops.Permute((0, 2, 1)), ["la"])  # (6, 5, 4)
    g.add("sp", ops.SumPool2d(2, stride=1, padding=1), ["perm"])  # (6, 6, 5), counts 0..4
    g.add("cb", ops.Conv2d(np.zeros((3, 6, 2, 3), np.float32), stride=(1, 2), padding=(0, 1), dilation=(2, 1),
                           q=QSynapse(_w(rng, prof, (3, 6, 2, 3)), weight_exp=-1)), ["sp"])
    g.add("lb", ops.LIF(q=_q(vth=30, dv=200)), ["cb"])  # (3, 4, 3)
    g.add("mp", ops.MaxPool2d(2), ["lb"])  # (3, 2, 1)
    g.add("fb", ops.Reshape((-1,)), ["mp"])
    g.add("x2", ops.Input((3, 11), encoding=Encoding("current"), layout="B", index=1, q=QInput(frac_bits=3, bits=6)))
    g.add("c1", ops.Conv1d(np.zeros((4, 3, 4), np.float32), stride=2, padding=2, dilation=2,
                           q=QSynapse(_w(rng, prof, (4, 3, 4)), weight_exp=-2)), ["x2"])
    g.add("lc", ops.LIF(q=_q(vth=20, dv=400)), ["c1"])  # (4, 5)
    g.add("fc", ops.Reshape((-1,)), ["lc"])
    g.add("d1", ops.Dense(np.zeros((5, 6), np.float32), q=QSynapse(_w(rng, prof, (5, 6)))), ["fb"])
    g.add("d2", ops.Dense(np.zeros((5, 20), np.float32), q=QSynapse(_w(rng, prof, (5, 20)))), ["fc"])
    g.add("res", ops.Add(), ["d1", "d2"])
    g.add("ld", ops.LIF(q=_q(vth=40, dv=300)), ["res"])
    g.add("o", ops.Output(), ["ld"])
    g.add("ob", ops.Output(index=1), ["lb"])
    g.profile = prof
    return g.verify()


CASES = {
    "graded": (graded_graph, "fpga:lanes=3",
               lambda rng: rng.uniform(-12, 12, size=(10, 3, 7)).astype(np.float32), ("m1", "t1", "b1")),
    "conv": (conv_graph, "fpga:lanes=4,weight_bits=6",
             lambda rng: [rng.uniform(-0.1, 1.1, size=(3, 2, 7, 9)).astype(np.float32),
                          rng.uniform(-4, 4, size=(3, 3, 11)).astype(np.float32)], ("la", "lb", "lc", "ld")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_synapse_paths_bit_exact(name, tmp_path):
    build, spec, inputs, layers = CASES[name]
    target = load_target(spec)
    builds = set()
    for case in range(2):
        rng = np.random.default_rng(10 + case)
        g = build(rng, target)
        out = tmp_path / f"case{case}"
        emit(g, out, target)
        assert lint(out, probe=True) == []
        ref, got = rtl_matches_int(g, out, inputs(rng), layers, f"{name} case {case}:\n")
        for n in layers:
            assert 0 < np.mean(ref.probes[n]["spikes"] != 0) < 1, f"layer {n} should be partly active"
        # the hardware's event counters see exactly the golden engine's nonzero values
        for pop, counts in got.stats["rtl"]["events"].items():
            nz = (ref.probes[pop]["spikes" if pop in layers else "out"] != 0)
            np.testing.assert_array_equal(counts, nz.reshape(nz.shape[0], nz.shape[1], -1).sum(-1))
        builds.add(got.stats["rtl"]["build_dir"])
    assert len(builds) == 1


def random_geometry_graph(seed: int):
    """A random conv geometry (channels, groups, kernel, stride, padding, dilation), an optional
    random pool, flatten and dense, under a random lane count."""
    rng = np.random.default_rng(seed)
    lanes = int(rng.integers(1, 5))
    target = load_target(f"fpga:lanes={lanes}")
    prof = target.profile
    groups = int(rng.choice([1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 4))
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad = (int(rng.integers(0, k[0] + 1)), int(rng.integers(0, k[1] + 1)))
    h, w = int(rng.integers(5, 10)), int(rng.integers(5, 12))
    g = Graph(f"geo{seed}", num_steps=5)
    g.add("x", ops.Input((cin, h, w), encoding=Encoding("bernoulli", bits=9, seed=seed + 1), layout="B"))
    g.add("conv", ops.Conv2d(np.zeros((cout, cin // groups, *k), np.float32), stride=stride, padding=pad,
                             dilation=dil, groups=groups,
                             q=QSynapse(_w(rng, prof, (cout, cin // groups, *k)), bias=rng.integers(-20, 20, size=cout))),
          ["x"])
    spike = str(rng.choice(["binary", "multilevel"]))
    g.add("a", ops.LIF(threshold=1.0, compare="ge", spike=spike, levels=3 if spike == "multilevel" else None,
                       q=_q(vth=int(rng.integers(15, 60)), dv=int(rng.integers(0, 2000)))), ["conv"])
    prev = "a"
    _, oh, ow = g["a"].shape
    pool = str(rng.choice(["none", "sum", "max"] if spike == "binary" and min(oh, ow) >= 2 else ["none", "sum"]))
    if pool != "none" and min(oh, ow) >= 2:
        kp = int(rng.integers(1, 3))
        op = ops.SumPool2d(kp + 1, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, (kp + 1) // 2 + 1)))
        if pool == "max":
            op = ops.MaxPool2d(kp + 1, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, (kp + 1) // 2 + 1)))
        prev = g.add("pool", op, [prev])
    prev = g.add("flat", ops.Reshape((-1,)), [prev])
    n = int(np.prod(g[prev].shape))
    g.add("fc", ops.Dense(np.zeros((7, n), np.float32), q=QSynapse(_w(rng, prof, (7, n)))), [prev])
    g.add("b", ops.LIF(q=_q(vth=int(rng.integers(20, 200)))), ["fc"])
    g.add("o", ops.Output(), ["b"])
    g.profile = prof
    x = rng.uniform(-0.1, 1.1, size=(2, cin, h, w)).astype(np.float32)
    return g.verify(), target, x


@pytest.mark.parametrize("seed", [2, 4, 7])
def test_random_conv_geometry(seed, tmp_path):
    g, target, x = random_geometry_graph(seed)
    emit(g, tmp_path / "rtl", target)
    assert lint(tmp_path / "rtl", probe=True) == []
    what = f"seed {seed} {[(n.name, n.op.summary()) for n in g]}:\n"
    ref, _ = rtl_matches_int(g, tmp_path / "rtl", x, ("a", "b"), what)
    assert ref.probes["a"]["spikes"].any()


def test_narrow_payloads_are_exact_at_their_extremes(tmp_path):
    """2-, 3- and 4-bit payloads (0/1 input events take 2 signed bits): every payload value, the most
    negative included, against the most negative weight, at 3 lanes, one synapse engine per width."""
    target = load_target("fpga:lanes=3")
    prof = target.profile
    rng = np.random.default_rng(5)
    g = Graph("narrow", num_steps=12)
    paths = []
    for k, bits in enumerate((2, 3, 4)):
        g.add(f"x{bits}", ops.Input((4,), encoding=Encoding("current"), layout="TB", index=k, q=QInput(frac_bits=0, bits=bits)))
        w = _w(rng, prof, (5, 4))
        w[0, :] = -(2 ** (prof.weight_bits - 1))  # the most negative weight on every input
        paths.append(g.add(f"fc{bits}", ops.Dense(np.zeros((5, 4), np.float32), q=QSynapse(w)), [f"x{bits}"]))
    g.add("sum", ops.Add(), paths)
    g.add("n", ops.LIF(reset="none", q=_q(vth=2 ** 12, dv=2000)), ["sum"])
    g.add("o", ops.Output(), ["n"])
    g.add("ov", ops.Output(layout="TB", index=1), [("n", "v")])
    g.profile = prof
    g.verify()
    emit(g, tmp_path, target)
    assert lint(tmp_path, probe=True) == []
    src = "\n".join(p.read_text() for p in sorted(tmp_path.glob("*.v")))
    assert all(f".PW({bits})" in src for bits in (2, 3, 4)), "one synapse engine per payload width"
    xs = []
    for bits in (2, 3, 4):  # every value of the width in every position over the steps
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        xs.append(rng.integers(lo, hi + 1, size=(12, 3, 4)).astype(np.float32))
        xs[-1][0, 0, :] = lo
        xs[-1][1, 0, :] = hi
    ref, _ = rtl_matches_int(g, tmp_path, xs, ("n",), "narrow payloads:\n")
    assert np.abs(ref.probes["n"]["v"]).max() > 0
