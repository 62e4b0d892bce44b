"""Neuron lanes (target option ``neuron_lanes``, default 1): a layer whose synapse paths are all
dense with L > 1 lanes updates L neurons per cycle from one accumulator word (`hdl/layer_lanes.v.j2`),
and its spikes leave through a queue in neuron order. Against the golden integer engine, bit for bit:

* random recurrent nets (seeded): lane counts that do not divide the layer sizes, a CUBA layer
  (stored current, per-neuron ``du`` and ``dv``: ``VEC_MU`` / ``VEC_MV``) with a recurrent path,
  per-neuron biases and floors, a second layer with graded (multi-level) spikes;
* fewer neuron lanes than lanes (2 or 4 behind 2-3 times as many: each accumulator word read in
  slices, as `lut_budget=` sizes them), and a layer that is one group (N = L = 2^k);
* every reset x timing x compare x spike combination of `test_rtl_neuron` at 4 lanes for 6
  neurons (bernoulli layers keep one neuron per cycle: one LFSR step per neuron);
* the sizing: `lanes=auto` and `lut_budget=` give neuron lanes where the neuron pass is the step.
"""

from __future__ import annotations

import numpy as np
import pytest
from rtl_check import rtl_matches_int
from test_rtl_neuron import N_IN, PROFILES, B, T, _graph, _skeleton
from test_rtl_pipeline import chain

from npuc.backends.rtl import budget, emit, lint, rtl_report, run
from npuc.backends.rtl.lower import _finish, _lower, lower
from npuc.backends.rtl.render import render
from npuc.backends.rtl.sim import load_design
from npuc.ir import LIF, QLIF, Dense, Encoding, Graph, Input, Output, QInput, QSynapse, ops
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target


def _dense(rng, prof, n_out, n_in, exp):
    wmax = 2 ** (prof.weight_bits - 1)
    return Dense(np.zeros((n_out, n_in), np.float32),
                 q=QSynapse(rng.integers(-wmax, wmax, size=(n_out, n_in)), weight_exp=exp))


def recurrent_hidden(g: Graph, rng, prof, n_in: int, n_h: int, exps=(-2, -1), vth=(64, 16), layout="B") -> None:
    """x (current, ``layout`` B: one input for every step, TB: one per step) -> fc -> h (CUBA,
    per-neuron du / dv, biases and floors, + h@t-1 -> rec), with the weight exponents ``exps`` of
    fc and rec and a threshold in ``vmax / vth``."""
    d = prof.decay_unity
    vmax = 2 ** (prof.v_bits - 1)
    g.add("x", Input((n_in,), encoding=Encoding("current"), layout=layout, q=QInput(frac_bits=5, bits=8)))
    g.add("fc", _dense(rng, prof, n_h, n_in, exps[0]), ["x"])
    g.add("rec", _dense(rng, prof, n_h, n_h, exps[1]), [("h", "spikes", 1)])
    g.add("sum", ops.Add(), ["fc", "rec"])
    qh = QLIF(du=rng.integers(d // 8, d // 2, size=n_h), dv=rng.integers(0, d // 4, size=n_h),
              vth=int(rng.integers(vmax // vth[0], vmax // vth[1])),
              bias_mant=rng.integers(-vmax // 256, vmax // 256, size=n_h), v_min=-rng.integers(0, vmax // 8, size=n_h))
    g.add("h", LIF(v_min=-1.0, q=qh), ["sum"])


def recurrent_net(rng, prof, n_in: int, n_h: int, n_o: int, steps: int = 12) -> Graph:
    """x -> fc -> h (CUBA, per-neuron du / dv, + h@t-1 -> rec) -> fo -> o (multi-level spikes)."""
    d = prof.decay_unity
    vmax = 2 ** (prof.v_bits - 1)
    g = Graph("nlanes", num_steps=steps)
    recurrent_hidden(g, rng, prof, n_in, n_h)
    g.add("fo", _dense(rng, prof, n_o, n_h, 0), ["h"])
    qo = QLIF(du=d, dv=int(rng.integers(0, d // 4)), vth=int(rng.integers(vmax // 64, vmax // 16)),
              bias_mant=np.array(0))
    g.add("o", LIF(spike="multilevel", compare="ge", levels=4, q=qo), ["fo"])
    g.add("out", Output(), ["o"])
    g.add("oi", Output(index=1, decoding="last", layout="B"), [("h", "i")])
    g.profile = prof
    return g.verify()


@pytest.mark.rtl
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_recurrent_nets_bit_exact(seed, tmp_path):
    rng = np.random.default_rng(seed)
    lanes = int(rng.choice([3, 5, 7]))
    n_h = int(rng.integers(2, 5)) * lanes + int(rng.integers(1, lanes))  # L does not divide N
    n_o = lanes + int(rng.integers(1, lanes))
    n_in = int(rng.integers(6, 20))
    target = load_target(f"fpga:lanes={lanes}")
    g = recurrent_net(rng, target.profile, n_in, n_h, n_o)
    d = lower(g, target)
    assert [lay.nl for lay in d.layers] == [lanes, lanes]
    assert d.layers[0].decay_vec == ("mv", "mu") and d.layers[0].uw > 0  # VEC_MV, VEC_MU, stored current
    emit(g, tmp_path, target)
    assert lint(tmp_path, probe=True) == [] and lint(tmp_path, probe=False) == []
    x = rng.uniform(-1, 1, size=(4, n_in)).astype(np.float32)
    ref, got = rtl_matches_int(g, tmp_path, x, ["h", "o"], f"seed {seed}, {lanes} lanes, h {n_h}, o {n_o}: ")
    spikes = ref.probes["h"]["spikes"]
    assert 0.02 < np.mean(spikes != 0) < 0.98, "the stimulus should make h both fire and stay silent"
    # the neuron pass of h is ceil(n_h / lanes) groups, its spikes one per cycle: the event-driven
    # bound never exceeds the measured cycles
    rtl = got.stats["rtl"]
    rep = rtl_report(g, tmp_path, got, yosys=False)
    h = next(lay for lay in rep["layers"] if lay["node"] == "h")
    assert h["cycles"]["efficiency"] <= 1.0
    assert load_design(tmp_path)["layers"][0]["neuron_lanes"] == lanes
    assert rtl["layer_cycles"]["h"].shape == spikes.shape[:2]


@pytest.mark.rtl
@pytest.mark.parametrize("seed", [3, 4])
def test_fewer_neuron_lanes_than_lanes_bit_exact(seed, tmp_path):
    """Neuron lanes that divide the lanes (as `lut_budget=` sizes them): each accumulator word is
    read in lanes / nl slices, one group of nl neurons per cycle."""
    rng = np.random.default_rng(seed)
    nl = int(rng.choice([2, 4]))
    lanes = nl * int(rng.choice([2, 3]))
    n_h = 3 * lanes + int(rng.integers(1, lanes))
    target = load_target(f"fpga:lanes={lanes}")
    g = recurrent_net(rng, target.profile, 9, n_h, lanes + 1)
    d = _finish(_lower(g, target, lanes, {}, {"h": nl, "o": 1}), target)
    assert [(lay.nl, lay.nk) for lay in d.layers] == [(nl, lanes // nl), (1, 1)]
    render(d, tmp_path)
    assert lint(tmp_path, probe=True) == [] and lint(tmp_path, probe=False) == []
    x = rng.uniform(-1, 1, size=(4, 9)).astype(np.float32)
    ref, got = rtl_matches_int(g, tmp_path, x, ["h", "o"], f"seed {seed}, {lanes} lanes, {nl} neuron lanes: ")
    assert 0.02 < np.mean(ref.probes["h"]["spikes"] != 0) < 0.98
    rep = rtl_report(g, tmp_path, got, yosys=False)
    assert all(lay["cycles"]["efficiency"] <= 1.0 for lay in rep["layers"])


@pytest.mark.rtl
def test_one_group_of_a_power_of_two_bit_exact(tmp_path):
    """Every neuron in one group, N = L = 2^k (the lane count does not fit the neuron index width)."""
    rng = np.random.default_rng(11)
    target = load_target("fpga:lanes=8")
    g = recurrent_net(rng, target.profile, 7, 8, 8)
    assert [(lay.nl, lay.groups) for lay in lower(g, target).layers] == [(8, 1), (8, 1)]
    emit(g, tmp_path, target)
    assert lint(tmp_path, probe=True) == [] and lint(tmp_path, probe=False) == []
    x = rng.uniform(-1, 1, size=(3, 7)).astype(np.float32)
    ref, _ = rtl_matches_int(g, tmp_path, x, ["h", "o"], "one group: ")
    assert ref.probes["h"]["spikes"].any()


def test_neuron_lanes_option_off_is_one_neuron_per_cycle(tmp_path):
    rng = np.random.default_rng(7)
    target = load_target("fpga:lanes=3,neuron_lanes=0")
    g = recurrent_net(rng, target.profile, 8, 10, 4)
    assert [lay.nl for lay in lower(g, target).layers] == [1, 1]
    on = lower(g, load_target("fpga:lanes=3"))
    assert [lay.nl for lay in on.layers] == [3, 3] and on.layers[0].groups == 4


def _wide_chain(neuron_lanes: int):
    """A layer whose neuron pass is the step: 400 neurons behind 2 input events per step."""
    t = load_target(f"fpga:lanes=auto,neuron_lanes={neuron_lanes}")
    g = chain(np.random.default_rng(5), t, sizes=(96, 400, 10), steps=6)
    g["x"].meta["rate"] = np.full(96, 0.02, np.float32)
    g["l0"].meta["rate"] = np.full(400, 0.01, np.float32)  # 4 spikes per step
    return g, t


def test_lanes_auto_and_budgets_give_neuron_lanes_where_the_neuron_pass_is_the_step():
    # floor = 96 input words; one neuron per cycle l0 costs 2 x ceil(400 / L) + 400 + 8 at any lanes
    g, t = _wide_chain(1)
    d = lower(g, t)
    l0 = d.layers[0]
    assert l0.nl == l0.paths[0].lanes > 1 and l0.groups <= 96 - 8 - 2 * l0.groups
    g, t = _wide_chain(0)
    d = lower(g, t)
    assert d.layers[0].nl == 1 and d.layers[0].paths[0].lanes == 400  # all lanes, still 400 + 8 cycles
    # a LUT budget picks neuron lanes too: the fastest candidate inside it
    g, t = _wide_chain(1)
    one = _finish(_lower(g, t, 1, {}), t)
    cands = budget.walk(g, one)
    assert any(c.neuron[0] > 1 for c in cands)
    best = cands[-1]
    got = lower(g, load_target(f"fpga:lut_budget={best.lut}"))
    assert got.layers[0].nl == best.neuron[0] > 1


@pytest.mark.rtl
@pytest.mark.parametrize("k", [2, 4], ids=[PROFILES[2][0], PROFILES[4][0]])
def test_neuron_options_at_four_lanes(k, tmp_path):
    """test_rtl_neuron's layers (6 neurons, one dense path each) at 4 lanes: 4 + 2 neurons per pass."""
    name, prof = PROFILES[k]
    target = load_target("fpga:lanes=4")
    specs = _skeleton(k, prof, k)
    g = _graph(specs, prof, 100 * k)
    nl = {lay.node: lay.nl for lay in lower(g, target).layers}
    assert all(nl[f"lif.{j}"] == (1 if s["spike"] == "bernoulli" else 4) for j, s in enumerate(specs))
    emit(g, tmp_path, target)
    assert lint(tmp_path, probe=True) == []
    x = np.random.default_rng(k).uniform(-9, 9, size=(T, B, N_IN)).astype(np.float32)
    ref = simulate(g, x, "int", probe=True)
    got = run(tmp_path, x, probe=True, progress=False)
    cmp = compare({n: ref.probes[n] for n in ref.probes if n.startswith("lif.")}, got.probes, engine="rtl")
    assert cmp.ok and cmp.mismatches == 0, f"profile {name}:\n{cmp.format()}"
    for a, b in zip(ref.outputs, got.outputs):
        np.testing.assert_array_equal(a, b)
