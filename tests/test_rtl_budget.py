"""Target options ``lut_budget=``, ``bram_budget=``, ``latency_us=`` (`npuc.backends.rtl.budget`):
lanes per layer sized under a resource budget or to a latency target, and one-line errors naming
the option and the smallest value that works."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_rtl_pipeline import _auto_chain, chain

from npuc.backends.rtl import budget, emit, run
from npuc.backends.rtl.lower import _finish, _lower, lower
from npuc.errors import RtlSupportError, TargetError
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target


def _graph():
    return _auto_chain(np.random.default_rng(5), load_target("fpga"))


def _walk():
    g = _graph()
    t = load_target("fpga")
    d = _finish(_lower(g, t, 1, {}), t)
    return (g, d), budget.walk(g, d)


def _lanes(spec: str) -> list[int]:
    d = lower(_graph(), load_target(spec))
    return [lay.paths[0].lanes for lay in d.layers]


def _smallest(msg: str) -> float:
    return float(re.search(r">= ([\d.]+)", msg).group(1))


def test_options_parse():
    t = load_target("fpga:lut_budget=5000,bram_budget=20,latency_us=12.5")
    assert (t.options["lut_budget"], t.options["bram_budget"], t.options["latency_us"]) == (5000, 20, 12.5)
    for bad in ("lut_budget=0", "bram_budget=-3", "latency_us=fast"):
        with pytest.raises(TargetError, match=bad.split("=")[0]):
            load_target(f"fpga:{bad}")


def test_walk_speeds_up_the_slowest_stage_to_the_floor():
    (g, d), cands = _walk()
    cycles = [c.cycles_per_step for c in cands]
    assert cycles == sorted(cycles, reverse=True) and len(set(cycles)) == len(cycles)
    assert [c.lut for c in cands] == sorted(c.lut for c in cands)
    # the walk ends where lanes=auto ends: the input stream (96 words) is the slowest stage; 20 lanes
    # bring l0 there (24 events x 2 chunks + 40 neurons + 8), for fewer LUTs than neuron lanes would
    assert cands[-1].cycles_per_step == 96 and cands[-1].lanes == {0: 20, 1: 1} and _lanes("fpga:lanes=auto") == [20, 1]
    assert all(v == 1 for c in cands for v in c.neuron.values())
    # latency: T steps at the slowest stage (l0: 24 events x 40 chunks + 40 neurons + 8), plus the
    # other stages' fill: input words, l1 (4 events x 10 + 10 + 8) and the output words
    c = cands[0]
    assert c.cycles_per_step == pytest.approx(24 * 40 + 40 + 8)
    assert c.latency_cycles == pytest.approx(g.num_steps * c.cycles_per_step + 96 + 58 + d.readout_words(False))


def test_lut_budget_takes_the_fastest_design_inside():
    _, cands = _walk()
    mid = cands[len(cands) // 2]
    got = _lanes(f"fpga:lut_budget={mid.lut}")
    assert got == [mid.lanes[0], mid.lanes[1]]
    assert _lanes(f"fpga:lut_budget={mid.lut - 1}")[0] < mid.lanes[0]
    assert _lanes("fpga:lut_budget=1000000") == _lanes("fpga:lanes=auto")
    # the estimate of a layer's memories at L lanes is the packing the lowering then emits
    t = load_target(f"fpga:lut_budget={mid.lut}")
    d = lower(_graph(), t)
    p = d.layers[0].paths[0]
    one = _finish(_lower(_graph(), t, 1, {}), t)
    mems = budget._memories(one, {0: p.lanes, 1: 1})
    assert (p.weights.width, p.weights.depth) in mems and mems.count((p.aw, p.adepth)) >= p.lanes


def test_latency_takes_the_smallest_design_that_meets_it():
    _, cands = _walk()
    k = len(cands) // 2
    us = cands[k].latency_cycles / 100  # clock_mhz=100 (the target file's nominal clock)
    assert _lanes(f"fpga:latency_us={us}") == [cands[k].lanes[0], 1]
    assert cands[k - 1].latency_cycles / 100 > us
    # at twice the clock, fewer lanes meet the same latency
    assert _lanes(f"fpga:latency_us={us},clock_mhz=200")[0] < cands[k].lanes[0]


@pytest.mark.parametrize("spec", ["lut_budget=100", "bram_budget=1", "latency_us=1",
                                  "latency_us=8,lut_budget=1500", "lut_budget=100000,bram_budget=1"])
def test_impossible_requests_name_the_smallest_value_that_works(spec):
    with pytest.raises(RtlSupportError) as err:
        lower(_graph(), load_target(f"fpga:{spec}"))
    msg = str(err.value)
    assert "\n" not in msg
    option = re.search(r"target option (\w+)=", msg).group(1)
    assert option in spec
    need = _smallest(msg)
    fixed = ",".join(f"{k}={need:g}" if k == option else f"{k}={v}" for k, v in (s.split("=") for s in spec.split(",")))
    lower(_graph(), load_target(f"fpga:{fixed}"))  # the value the message names works


def test_budget_with_fixed_lanes_is_an_error():
    with pytest.raises(RtlSupportError, match=r"lut_budget=5000 sizes each layer's lanes itself: drop lanes=4"):
        lower(_graph(), load_target("fpga:lanes=4,lut_budget=5000"))
    with pytest.raises(RtlSupportError, match="firing rate of 'x'"):
        lower(chain(np.random.default_rng(5), load_target("fpga")), load_target("fpga:latency_us=50"))


@pytest.mark.rtl
def test_budgeted_design_is_bit_exact(tmp_path):
    _, cands = _walk()
    t = load_target(f"fpga:lut_budget={cands[3].lut}")
    g = _graph()
    emit(g, tmp_path / "rtl", t)
    x = np.random.default_rng(6).uniform(-1, 1, size=(2, 96)).astype(np.float32)
    ref = simulate(g, x, "int", probe=True)
    got = run(tmp_path / "rtl", x, probe=True, progress=False)
    cmp = compare({n: ref.probes[n] for n in ("l0", "l1")}, got.probes, engine="rtl")
    assert cmp.ok and cmp.mismatches == 0, cmp.format()
    assert got.stats["rtl"]["lanes"] == cands[3].lanes[0]


def _one_lane(model, calib, spec: str, tmp_path):
    """The quantized graph of ``model`` for ``fpga:spec`` and its design lowered at one lane."""
    from npuc.api import compile as npuc_compile

    g = npuc_compile(model, calib, target=f"fpga:{spec}", out=tmp_path / "b").quantized()
    t = load_target(f"fpga:{spec}")
    return _finish(_lower(g, t, 1, {}), t)


def test_lut_estimate_is_near_placed_designs(tmp_path):
    """`budget.estimate` against LUT4 placed by nextpnr on the LFE5U-85F (README, RTL efficiency):
    the MNIST-size MLP with 5-bit weights and 2-bit input events at 26 and 10 lanes (4,362 and
    2,680 LUT4, 2026-12-07), and the SHD-size recurrent net at 44 lanes with 4 neuron lanes
    (16,624), and as neuron arrays (18,910 and 17,048). Their payload multiplies went to MULT18s, so charging
    them in LUT4 was 18 % over."""
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package
    from models.shd_models import RLeakySHD

    from bench.rtl_efficiency import MLP784, digits28, shd_events

    torch.manual_seed(0)
    mlp = MLP784(encode=False).eval()
    x, _ = digits28()
    spikes = MLP784().encode(torch.from_numpy(x[:200])).numpy()
    d = _one_lane(mlp, spikes, "weight_bits=5,input=events,input_bits=2", tmp_path / "mnist")
    for lanes, placed in ((26, 4362), (10, 2680)):
        assert budget.estimate(d, {0: lanes, 1: 1})["lut"] == pytest.approx(placed, rel=0.125)
    torch.manual_seed(0)
    d = _one_lane(RLeakySHD(hidden=256).eval(), shd_events(16), "input=events,input_bits=2", tmp_path / "shd")
    assert budget.estimate(d, {0: 44, 1: 1}, {0: 4, 1: 1})["lut"] == pytest.approx(16624, rel=0.125)
    # as neuron arrays (array=1, lif1 16 or 8 neuron lanes, lif2 2): placed 18,910 / 17,048 LUT4, 137 DP16KD
    for nl, placed in ((16, 18910), (8, 17048)):
        est = budget.estimate(d, {0: 1, 1: 1}, {}, {0: nl, 1: 2})
        assert est["lut"] == pytest.approx(placed, rel=0.125) and est["bram"] == pytest.approx(137, rel=0.125)
