"""The neuron array layer (target option ``array``, `hdl/npuc_array.v`): one accumulator
register per neuron shared by every dense path into the layer, one event per cycle adding its
whole weight row, the neuron update on ``array_nl`` time-shared `npuc_lif` lanes. Against the
golden integer engine, bit for bit:

* random recurrent nets (seeded; sizes not powers of two, neuron lanes not dividing them): a
  CUBA layer with per-neuron ``du`` / ``dv``, biases and floors, graded (current) input and a
  recurrent path whose exponents share one accumulator (one of them negative), a second array
  layer with multi-level spikes reading graded events; a reset in the middle of a step;
* test_rtl_neuron's reset x timing x compare x spike layers under two profile variants, with a
  reset in the middle of a step;
* the sharing rule: two negative exponents keep today's layer under ``array=1`` and are an
  error when the layer is named; a conv layer named in the option is an error;
* the cycle bound never exceeds the measured cycles; ``array=auto`` lets ``lut_budget`` choose
  array layers.
"""

from __future__ import annotations

import numpy as np
import pytest
from rtl_check import rtl_matches_int
from test_rtl_neuron import N_IN, PROFILES, B, T, _graph, _skeleton
from test_rtl_neuron_lanes import _dense, recurrent_hidden
from test_rtl_pipeline import _auto_chain

from npuc.backends.rtl import budget, emit, lint, run
from npuc.backends.rtl.lower import _finish, _lower, lower
from npuc.backends.rtl.report import ARRAY_WALK, layer_bound
from npuc.backends.rtl.sim import load_design
from npuc.errors import NpucError
from npuc.ir import LIF, QLIF, Encoding, Graph, Input, Output, QInput, ops
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target


def array_net(rng, prof, n_in: int, n_h: int, n_o: int, exps=(-1, 2), steps: int = 10, o_spike="multilevel",
              layout="B") -> Graph:
    """x (current) -> fc -> h (CUBA, per-neuron du / dv, + h@t-1 -> rec) -> fo -> o (multi-level
    or ternary) -> fp -> p (binary; reads o's graded spikes)."""
    d = prof.decay_unity
    vmax = 2 ** (prof.v_bits - 1)
    g = Graph("arraynet", num_steps=steps)
    recurrent_hidden(g, rng, prof, n_in, n_h, exps, vth=(16, 4), layout=layout)
    g.add("fo", _dense(rng, prof, n_o, n_h, 2), ["h"])
    vth = int(rng.integers(vmax // 512, vmax // 128))
    qo = QLIF(du=d, dv=int(rng.integers(0, d // 4)), vth=vth, vth_lo=-vth if o_spike == "ternary" else None,
              bias_mant=np.array(0))
    if o_spike == "ternary":
        g.add("o", LIF(spike="ternary", threshold_lo=-1.0, q=qo), ["fo"])
    else:
        g.add("o", LIF(spike="multilevel", compare="ge", levels=4, q=qo), ["fo"])
    g.add("fp", _dense(rng, prof, 3, n_o, 1), ["o"])
    g.add("p", LIF(q=QLIF(du=d, dv=d // 8, vth=vmax // 64, bias_mant=np.array(1))), ["fp"])
    g.add("out", Output(), ["p"])
    g.add("oi", Output(index=1, decoding="last", layout="B"), [("h", "i")])
    g.profile = prof
    return g.verify()


def h_groups(n: int, nl: int) -> int:
    return -(-n // nl)


# (neuron lanes, exponents of fc and rec, pipeline, o's spikes, input): neuron lanes that do not
# divide the sizes; a negative exponent owning the shared sum, positive ones shifted onto it; the
# sequential top once; ternary spikes into p: one +-w term per event (POW2), multi-level 0..3:
# shift-adds; input=events with bursty steps (none, a few or every input nonzero) once
CASES = {0: (3, (-1, 2), 1, "multilevel", "dense"), 1: (5, (1, 2), 0, "ternary", "dense"),
         2: (2, (3, -2), 1, "multilevel", "events")}


def bursty(rng, steps: int, batch: int, n: int) -> np.ndarray:
    """Currents ``[T, B, n]`` whose steps have no, one or two, or every input nonzero."""
    x = rng.uniform(-1, 1, size=(steps, batch, n)).astype(np.float32)
    keep = rng.choice(3, size=(steps, batch))
    x[keep == 0] = 0.0
    few = rng.uniform(size=(steps, batch, n)) < 2 / n
    x[keep == 1] *= few[keep == 1]
    return x


@pytest.mark.rtl
@pytest.mark.parametrize("seed", sorted(CASES))
def test_random_array_nets_bit_exact(seed, tmp_path):
    rng = np.random.default_rng(40 + seed)
    nl, exps, pipe, o_spike, inp = CASES[seed]
    n_h = 3 * nl + int(rng.integers(1, nl))
    n_o = nl + int(rng.integers(1, nl))
    n_in = int(rng.integers(6, 20)) + (16 if inp == "events" else 0)  # bursts longer than a neuron pass
    target = load_target(f"fpga:array=1,array_nl={nl},pipeline={pipe},input={inp}")
    g = array_net(rng, target.profile, n_in, n_h, n_o, exps, o_spike=o_spike, layout="TB" if inp == "events" else "B")
    d = lower(g, target)
    # h (the largest) gets array_nl neuron lanes, the others as many groups or fewer
    assert all(lay.array is not None for lay in d.layers) and d.layers[0].nl == nl
    assert all(2 <= lay.nl <= nl and lay.groups <= h_groups(n_h, nl) for lay in d.layers)
    # every list is read by arrays only: they drive the next cycle's address, the list registers it
    assert d.evlists and all(ev.ra_next for ev in d.evlists)
    h = d.layers[0]
    # signed 8-bit currents (shift-adds), binary spikes, multi-level 0..3 (shift-adds) or ternary (POW2)
    tern = o_spike == "ternary"
    assert [(a.psigned, a.binary, a.pow2) for a in (lay.array for lay in d.layers)] == [
        (True, False, False), (False, True, False), (tern, False, tern)]
    assert h.array.owner == int(np.argmin(exps)) and h.array.rom.depth == n_in + n_h
    assert h.decay_vec == ("mv", "mu") and h.uw > 0  # VEC_MV, VEC_MU, stored current
    emit(g, tmp_path, target)
    assert lint(tmp_path, probe=True) == [] and lint(tmp_path, probe=False) == []
    # a pipelined top: every undelayed path walks its next step during the neuron pass (h's
    # recurrent path waits for the step's start)
    assert [[p.early for p in lay.paths] for lay in d.layers] == ([[True, False], [True], [True]] if pipe else
                                                                  [[False, False], [False], [False]])
    x = bursty(rng, 10, 3, n_in) if inp == "events" else rng.uniform(-1, 1, size=(4, n_in)).astype(np.float32)
    what = f"seed {seed}, {nl} neuron lanes, h {n_h}, o {n_o}, exponents {exps}: "
    ref, got = rtl_matches_int(g, tmp_path, x, ["h", "o", "p"], what)
    if inp == "events":  # PROBE=0: no stage waits for the readout of the layers it runs
        fast = run(tmp_path, x, probe=False, progress=False, reset_check=(4, 9))
        for a, b in zip(ref.outputs, fast.outputs):
            np.testing.assert_array_equal(a, b)
    spikes = ref.probes["h"]["spikes"]
    assert 0.02 < np.mean(spikes != 0) < 0.98, "the stimulus should make h both fire and stay silent"
    o = ref.probes["o"]["spikes"]
    assert np.any(o < 0) if tern else np.any(o > 1), "graded spikes should reach the third array"
    # a reset in the middle of the second step: the accumulators and state start over
    rtl_matches_int(g, tmp_path, x[:, :2] if inp == "events" else x[:2], ["h", "o", "p"], what + "after a reset mid-step: ",
                    reset_check=(1, 17))
    _check_bound(tmp_path, got.stats["rtl"])
    if inp == "events":
        _check_bound(tmp_path, fast.stats["rtl"])
        # bursts of early events: their walk is hidden (the bound leaves them out)
        assert np.max(fast.stats["rtl"]["events"]["x"]) > h_groups(n_h, nl) + ARRAY_WALK["drain"]


@pytest.mark.rtl
def test_array_reading_its_own_stage(tmp_path):
    """h (array) reads x early, its own and o's spikes of the previous step; o (array) reads h's
    spikes of the same step, so h and o are one stage and o's path waits for its start; bursty
    input events, PROBE 1 with a mid-step reset and PROBE 0, against the integer engine."""
    rng = np.random.default_rng(7)
    target = load_target("fpga:array=1,array_nl=3,input=events")
    prof = target.profile
    d_, vmax = prof.decay_unity, 2 ** (prof.v_bits - 1)
    n_in, n_h, n_o = 23, 11, 5
    g = Graph("samestage", num_steps=10)
    g.add("x", Input((n_in,), encoding=Encoding("current"), layout="TB", q=QInput(frac_bits=5, bits=8)))
    g.add("fc", _dense(rng, prof, n_h, n_in, -1), ["x"])
    g.add("rec", _dense(rng, prof, n_h, n_h, 2), [("h", "spikes", 1)])
    g.add("fb", _dense(rng, prof, n_h, n_o, 1), [("o", "spikes", 1)])
    g.add("sum", ops.Add(), ["fc", "rec", "fb"])
    g.add("h", LIF(q=QLIF(du=d_ // 2, dv=d_ // 8, vth=vmax // 16, bias_mant=np.array(0))), ["sum"])
    g.add("fo", _dense(rng, prof, n_o, n_h, 2), ["h"])
    g.add("o", LIF(q=QLIF(du=d_, dv=d_ // 8, vth=vmax // 64, bias_mant=np.array(1))), ["fo"])
    g.add("out", Output(), ["o"])
    g.profile = prof
    d = lower(g.verify(), target)
    assert d.pipeline.groups == [[0, 1]] and all(lay.array is not None for lay in d.layers)
    assert [[p.early for p in lay.paths] for lay in d.layers] == [[True, False, False], [False]]
    emit(g, tmp_path, target)
    x = bursty(rng, 10, 3, n_in)
    ref, got = rtl_matches_int(g, tmp_path, x, ["h", "o"], "same stage: ", reset_check=(3, 13))
    assert 0.02 < np.mean(ref.probes["h"]["spikes"] != 0) < 0.98 and np.any(ref.probes["o"]["spikes"] != 0)
    fast = run(tmp_path, x, probe=False, progress=False)
    for a, b in zip(ref.outputs, fast.outputs):
        np.testing.assert_array_equal(a, b)
    _check_bound(tmp_path, fast.stats["rtl"])


@pytest.mark.rtl
def test_early_path_of_a_layer_not_first_in_its_stage(tmp_path):
    """o reads a (an earlier stage) early but is the second layer of its stage (h, o: o -> h is
    recurrent), so its next-step flags come from the stage's layer select; h also reads x early.
    Bursty input events, PROBE 1 with a mid-step reset and PROBE 0, against the integer engine."""
    rng = np.random.default_rng(11)
    target = load_target("fpga:array=1,array_nl=3,input=events")
    prof = target.profile
    d_, vmax = prof.decay_unity, 2 ** (prof.v_bits - 1)
    n_in, n_a, n_h, n_o = 23, 9, 11, 5
    lif = dict(du=d_ // 2, dv=d_ // 8, vth=vmax // 16, bias_mant=np.array(0))
    g = Graph("nonfirst", num_steps=10)
    g.add("x", Input((n_in,), encoding=Encoding("current"), layout="TB", q=QInput(frac_bits=5, bits=8)))
    g.add("fa", _dense(rng, prof, n_a, n_in, -1), ["x"])
    g.add("a", LIF(q=QLIF(**lif)), ["fa"])
    g.add("fc", _dense(rng, prof, n_h, n_in, -1), ["x"])
    g.add("fb", _dense(rng, prof, n_h, n_o, 1), [("o", "spikes", 1)])
    g.add("sum", ops.Add(), ["fc", "fb"])
    g.add("h", LIF(q=QLIF(**lif)), ["sum"])
    g.add("fo", _dense(rng, prof, n_o, n_h, 2), ["h"])
    g.add("fao", _dense(rng, prof, n_o, n_a, 2), ["a"])
    g.add("osum", ops.Add(), ["fo", "fao"])
    g.add("o", LIF(q=QLIF(du=d_, dv=d_ // 8, vth=vmax // 64, bias_mant=np.array(1))), ["osum"])
    g.add("out", Output(), ["o"])
    g.profile = prof
    d = lower(g.verify(), target)
    assert d.pipeline.groups == [[0], [1, 2]]
    assert [[p.early for p in lay.paths] for lay in d.layers] == [[True], [True, False], [False, True]]
    emit(g, tmp_path, target)
    x = bursty(rng, 10, 3, n_in)
    ref, _ = rtl_matches_int(g, tmp_path, x, ["a", "h", "o"], "non-first early: ", reset_check=(3, 13))
    assert np.any(ref.probes["a"]["spikes"] != 0) and np.any(ref.probes["o"]["spikes"] != 0)
    fast = run(tmp_path, x, probe=False, progress=False, reset_check=(4, 9))
    for a, b in zip(ref.outputs, fast.outputs):
        np.testing.assert_array_equal(a, b)


def _check_bound(art, rtl):
    """The event-driven bound (report.array_bound: the walk of the paths that wait for the layer's
    start, the snapshot, the neuron pass) never exceeds the measured cycles, and only by where the
    spikes start (the queue) and, behind a producer that finished just before, the early walk's tail."""
    for lay in load_design(art)["layers"]:
        meas, bound = rtl["layer_cycles"][lay["node"]], layer_bound(lay, rtl, [])["bound"]
        tail = ARRAY_WALK["drain"] if any(p["early"] for p in lay["paths"]) else 0
        assert np.all(bound <= meas) and np.all(meas - bound <= h_groups(lay["n"], lay["neuron_lanes"]) + tail), lay["node"]


def _two_right_shifts(name_exps=(-1, -2)):
    rng = np.random.default_rng(3)
    prof = load_target("fpga").profile
    return array_net(rng, prof, 7, 10, 4, name_exps)


def test_array_takes_only_layers_whose_paths_share_exactly():
    g = _two_right_shifts()
    d = lower(g, load_target("fpga:array=1,array_nl=4"))
    # h: two floor shifts do not add, so it keeps its lane layer; o (one path) is an array
    assert [(lay.node, lay.array is not None) for lay in d.layers] == [("h", False), ("o", True), ("p", True)]
    with pytest.raises(NpucError, match=r"^layer 'h' cannot be a neuron array .*floor shifts") as e:
        lower(g, load_target("fpga:array=h+o"))
    assert "\n" not in str(e.value)
    with pytest.raises(NpucError, match=r"array=fc: 'fc' is not a LIF node"):
        lower(g, load_target("fpga:array=fc"))
    d = lower(_two_right_shifts((-1, 2)), load_target("fpga:array=o"))
    assert [lay.array is not None for lay in d.layers] == [False, True, False]


def test_lut_budget_with_array_auto_chooses_array_layers():
    """``array=auto``: the budget's candidates include every layer that can be an array at 2, 4, ...
    neuron lanes (one variant per lane count of the other layers); a budget takes the fastest
    candidate inside it, an array or not, and the lowering builds what it chose."""
    g = _auto_chain(np.random.default_rng(5), load_target("fpga"))
    t = load_target("fpga")
    one = _finish(_lower(g, t, 1, {}), t)
    cands = budget.with_arrays(g, one, budget.walk(g, one))
    arrays = [c for c in cands if c.array]
    assert arrays and [c.lut for c in cands] == sorted(c.lut for c in cands)
    assert len({tuple(sorted(c.array.items())) for c in arrays}) == len(arrays)  # here: no other layer
    for c in (arrays[0], arrays[-1]):
        inside = [v for v in cands if v.lut <= c.lut]
        want = min(inside, key=lambda v: v.cycles_per_step)
        d = lower(g, load_target(f"fpga:array=auto,lut_budget={c.lut}"))
        assert {lay.index: lay.nl for lay in d.layers if lay.array is not None} == (want.array or {})
        # the estimate's memories are the ROM the lowering emits
        arr = _finish(_lower(g, t, 1, {}, None, {one.layers[k].node: v for k, v in c.array.items()}), t)
        assert [lay.nl for lay in arr.layers] == [c.array[0], c.array[1]]
        rom = arr.layers[0].array.rom
        assert (rom.width, rom.depth) in budget._memories(one, c.lanes, c.neuron, c.array)
    assert all(lay.array is None for lay in lower(g, load_target(f"fpga:lut_budget={arrays[-1].lut}")).layers)
    with pytest.raises(NpucError, match=r"array=auto lets lut_budget"):
        lower(g, load_target("fpga:array=auto"))


@pytest.mark.rtl
@pytest.mark.parametrize("k", [1, 3], ids=[PROFILES[1][0], PROFILES[3][0]])
def test_neuron_options_as_arrays(k, tmp_path):
    """test_rtl_neuron's layers (6 neurons, one dense path each: every reset x timing x compare x
    spike combination under a profile variant) as arrays of 4 neuron lanes (4 + 2 neurons per
    pass); bernoulli layers keep their lane layer (one LFSR step per neuron in order)."""
    name, prof = PROFILES[k]
    target = load_target("fpga:array=1,array_nl=4")
    specs = _skeleton(k, prof, k)
    g = _graph(specs, prof, 100 * k)
    d = lower(g, target)
    arr = {lay.node: lay.array is not None for lay in d.layers}
    assert all(arr[f"lif.{j}"] == (s["spike"] != "bernoulli") for j, s in enumerate(specs)) and any(arr.values())
    # lane layers read x too: its address is this cycle's read, arrays and lane layers OR-ed (RA_NEXT 0)
    assert not all(arr.values()) and [ev.ra_next for ev in d.evlists] == [False]
    emit(g, tmp_path, target)
    assert lint(tmp_path, probe=True) == []
    x = np.random.default_rng(k).uniform(-9, 9, size=(T, B, N_IN)).astype(np.float32)
    ref = simulate(g, x, "int", probe=True)
    got = run(tmp_path, x, probe=True, progress=False, reset_check=(2, 11))
    cmp = compare({n: ref.probes[n] for n in ref.probes if n.startswith("lif.")}, got.probes, engine="rtl")
    assert cmp.ok and cmp.mismatches == 0, f"profile {name}:\n{cmp.format()}"
    for a, b in zip(ref.outputs, got.outputs):
        np.testing.assert_array_equal(a, b)
