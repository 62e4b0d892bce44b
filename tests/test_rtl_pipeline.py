"""Layer pipelining across time steps (target option ``pipeline``, `npuc.backends.rtl.pipeline`).

The stage schedule and the emitted tops are checked without a simulator (Verilator's lint only);
the ``rtl`` tests run the same graph with ``pipeline=1`` and ``pipeline=0`` in Verilator and
require both to equal the integer engine bit for bit (every layer's spikes, v and i with PROBE=1,
the outputs without), to count the same events per step, and the pipelined one to need fewer
cycles per step.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from builders import seeded_case
from rtl_check import rtl_matches_int
from test_rtl_attention import coincidence_graph, stochastic_graph
from test_rtl_network import _dense, _rand_lif, convnet, mlp

from npuc.backends.rtl import emit, lint, rtl_report, run
from npuc.backends.rtl.lower import lower
from npuc.backends.rtl.report import layer_bound
from npuc.backends.rtl.sim import load_design
from npuc.ir import Encoding, Graph, Input, Output, QInput
from npuc.ir.ops import LIF
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target


def chain(rng, target, sizes=(16, 12, 10, 6), steps=8) -> Graph:
    """x -> fc0 -> l0 -> fc1 -> l1 -> fc2 -> l2: a feed-forward chain, one stage per layer."""
    prof = target.profile
    g = Graph("chain", num_steps=steps)
    g.add("x", Input((sizes[0],), encoding=Encoding("current"), layout="B", q=QInput(frac_bits=6, bits=8)))
    prev = "x"
    for j in range(len(sizes) - 1):
        g.add(f"fc{j}", _dense(rng, prof, sizes[j + 1], sizes[j], exp=-1 if j == 0 else 0), [prev])
        prev = g.add(f"l{j}", _rand_lif(rng, prof, sizes[j + 1]), [f"fc{j}"])
    g.add("o", Output(), [prev])
    g.add("ov", Output(decoding="last", layout="B", index=1), [(prev, "v")])
    g.profile = prof
    return g.verify()


def delayed_input(rng, target) -> Graph:
    """A layer that reads the input of the previous step (the input stage waits for it)."""
    prof = target.profile
    g = Graph("din", num_steps=4)
    g.add("x", Input((6,), encoding=Encoding("current"), layout="B", q=QInput(frac_bits=6, bits=8)))
    g.add("fc", _dense(rng, prof, 5, 6), [("x", "out", 1)])
    g.add("l", _rand_lif(rng, prof, 5), ["fc"])
    g.add("o", Output(), ["l"])
    g.profile = prof
    return g.verify()


def _target(spec, pipeline: int):
    """The target (spec text or `Target`) with the pipeline option set."""
    t = load_target(spec) if isinstance(spec, str) else spec
    return dataclasses.replace(t, options={**t.options, "pipeline": bool(pipeline)})


def test_schedule_groups():
    t = load_target("fpga")
    rng = np.random.default_rng(0)
    d = lower(chain(rng, t), t)
    assert d.pipeline.groups == [[0], [1], [2]] and d.pipeline.stages == 4 and d.pipeline.depth == 8
    assert all(ev.banks == 2 for ev in d.evlists)  # every list is read by the next stage
    assert d.pipeline.readout_groups == {3}
    # a recurrent layer keeps its own stage: its list gets a copy for the stage after it
    d = lower(mlp(rng, t), t)
    assert d.pipeline.groups == [[0], [1]]
    h = next(ev for ev in d.evlists if ev.pop == "h")
    assert (h.banks, h.copy_banks) == (2, (2,)) and h.bits == 4 * h.dw * h.n
    d = lower(delayed_input(rng, t), t)
    assert d.pipeline.groups == [[0]] and d.pipeline.delayed == {d.evlists[0].ident: {1}}
    off = lower(chain(rng, t), _target("fpga", 0))
    assert off.pipeline is None and [ev.banks for ev in off.evlists] == [1, 1, 1]


def test_pipeline_off_is_the_sequential_top(tmp_path):
    rng = np.random.default_rng(1)
    t0, t1 = _target("fpga", 0), load_target("fpga")
    g = chain(rng, t1)
    emit(g, tmp_path / "seq", t0)
    emit(g, tmp_path / "pipe", t1)
    seq, pipe = ((tmp_path / k / "npuc_chain.v").read_text() for k in ("seq", "pipe"))
    assert "S_LAYER" in seq and "n_s0" not in seq
    assert "n_s3" in pipe and "S_LAYER" not in pipe
    for k in ("seq", "pipe"):
        assert lint(tmp_path / k) == [] and lint(tmp_path / k, probe=True) == []


def test_pipelined_tops_lint_clean(tmp_path):
    rng = np.random.default_rng(2)
    cnn_target = load_target("fpga:lanes=2")
    for name, (g, target) in {"cnn": (convnet(rng, cnn_target), cnn_target), "att": coincidence_graph(10)[:2],
                              "sc": stochastic_graph(9)[:2]}.items():
        emit(g, tmp_path / name, target)
        assert lower(g, target).pipeline is not None, name
        assert lint(tmp_path / name) == [] and lint(tmp_path / name, probe=True) == [], name


def _both(g, spec, x, tmp_path):
    """Run pipeline=1 and pipeline=0 against the integer engine; returns both runs' stats."""
    layers = [lay.node for lay in lower(g, _target(spec, 1)).layers]
    ref = simulate(g, x, "int", probe=True)
    stats = {}
    for pipe in (1, 0):
        art = tmp_path / f"p{pipe}"
        emit(g, art, _target(spec, pipe))
        got = run(art, x, probe=True, progress=False)
        cmp = compare({n: ref.probes[n] for n in layers if n in got.probes}, got.probes, engine="rtl")
        assert cmp.ok and cmp.mismatches == 0, (pipe, cmp.format())
        plain = run(art, x, progress=False)
        for a, b, c in zip(ref.outputs, got.outputs, plain.outputs):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        stats[pipe] = (plain.stats["rtl"], art, plain)
    s1, s0 = stats[1][0], stats[0][0]
    for pop in s0["events"]:
        np.testing.assert_array_equal(s1["events"][pop], s0["events"][pop])
    return stats


@pytest.mark.rtl
def test_chain_pipelined_equals_sequential(tmp_path):
    spec = "fpga:lanes=3"
    g, x = seeded_case(chain, spec, 4, (3, 16))
    stats = _both(g, spec, x, tmp_path)
    s1, s0 = stats[1][0], stats[0][0]
    # the status of a step is the step's own: layer cycles equal the sequential run after the first step
    for node in s0["layer_cycles"]:
        np.testing.assert_array_equal(s1["layer_cycles"][node][1:], s0["layer_cycles"][node][1:])
    assert s1["cycles_per_step"] < 0.8 * s0["cycles_per_step"]
    assert s1["latency_cycles_mean"] > 0
    rep = rtl_report(g, stats[1][1], stats[1][2], yosys=False)
    tot = rep["total"]
    assert tot["pipelined"] and tot["slowest_stage_bound"] > 0
    assert tot["cycles_per_step"] >= 0.9 * tot["slowest_stage_bound"]


@pytest.mark.rtl
def test_conv_pool_pipelined_equals_sequential(tmp_path):
    spec = "fpga:lanes=2"
    g, x = seeded_case(convnet, spec, 7, (3, 1, 8, 8))
    stats = _both(g, spec, x, tmp_path)
    assert stats[1][0]["cycles_per_step"] < stats[0][0]["cycles_per_step"]
    np.testing.assert_array_equal(stats[1][0]["pooled"], stats[0][0]["pooled"])


@pytest.mark.rtl
def test_delayed_input_pipelined_equals_sequential(tmp_path):
    g, x = seeded_case(delayed_input, "fpga", 8, (3, 6))
    _both(g, "fpga", x, tmp_path)


@pytest.mark.rtl
def test_recurrent_pipelined_equals_sequential(tmp_path):
    spec = "fpga:weight_bits=6,state_bits=12,lanes=4"
    g, x = seeded_case(mlp, spec, 3, (4, 12))
    stats = _both(g, spec, x, tmp_path)
    assert stats[1][0]["cycles_per_step"] < stats[0][0]["cycles_per_step"]
    # the bound of the recurrent layer 'h' counts the spikes of h's previous step (from the golden
    # engine here): x -> h (12 events, ceil(10 / 4) = 3 cycles each) + h@t-1 -> h, then the neuron
    # pass: 3 groups of 4 neuron lanes, or the step's spikes + 4 through the spike queue (its entry
    # is registered before the queue's RAM)
    spikes = (simulate(g, x, "int", probe=True).probes["h"]["spikes"] != 0).sum(-1)  # [T, B]
    prev = np.concatenate([np.zeros_like(spikes[:1]), spikes[:-1]])
    assert (prev != spikes).any()  # the wrong step would give another bound

    def path(ev):  # events x cycles per event + fill (see report.PHASE_DEPTH)
        return ev * 3 + np.where(ev > 0, 8, 3)

    for pipe in (0, 1):
        rtl, art, res = stats[pipe]
        h = next(lay for lay in load_design(art)["layers"] if lay["node"] == "h")
        bound = layer_bound(h, rtl, [])["bound"]
        expect = path(rtl["events"]["x"]) + path(prev) + np.where(spikes > 0, np.maximum(3, spikes + 4), 3) + 6
        np.testing.assert_array_equal(bound, expect)
        first = np.zeros(expect.shape, bool)
        first[0, 0] = True  # the first step after reset also clears the accumulators
        np.testing.assert_array_equal(rtl["layer_cycles"]["h"][~first], expect[~first])
        rep = rtl_report(g, art, res, yosys=False)
        assert all(lay["cycles"]["efficiency"] <= 1.0 for lay in rep["layers"]), rep["layers"]
        assert rep["total"]["cycles_per_step_over_bound"] >= 1.0


@pytest.mark.rtl
@pytest.mark.parametrize("which", ["coincidence", "stochastic"])
def test_attention_pipelined_equals_sequential(which, tmp_path):
    g, target, inputs, _ = coincidence_graph(13) if which == "coincidence" else stochastic_graph(13)
    assert target.options["lanes"] > 1 or which == "stochastic"
    assert [n for n in g if isinstance(n.op, LIF)]
    _both(g, target, inputs(np.random.default_rng(5)), tmp_path)


def _auto_chain(rng, target) -> Graph:
    g = chain(rng, target, sizes=(96, 40, 10), steps=6)
    g["x"].meta["rate"] = np.full(96, 0.25, np.float32)  # 24 events per step
    g["l0"].meta["rate"] = np.full(40, 0.1, np.float32)  # 4 spikes per step
    return g


def test_lanes_auto_sizes_each_layer():
    from npuc.errors import TargetError

    assert load_target("fpga:lanes=auto").options["lanes"] == "auto"
    with pytest.raises(TargetError, match="'auto'"):
        load_target("fpga:lanes=fast")
    t = load_target("fpga:lanes=auto")
    d = lower(_auto_chain(np.random.default_rng(5), t), t)
    # floor = 96 input words; l0: 24 x ceil(40 / L) + 40 + 8 <= 96 needs 2 chunks -> 20 lanes;
    # l1: 4 x 10 + 10 + 8 <= 96 at one lane
    assert [[p.lanes for p in lay.paths] for lay in d.layers] == [[20], [1]] and d.lanes == 20
    g = chain(np.random.default_rng(5), t)
    with pytest.raises(Exception, match="firing rate of 'x'"):
        lower(g, t)


@pytest.mark.rtl
def test_lanes_auto_pipelined_equals_int_engine(tmp_path):
    g, x = seeded_case(_auto_chain, "fpga:lanes=auto", 6, (2, 96), tmp_path / "rtl")
    rtl_matches_int(g, tmp_path / "rtl", x, ("l0", "l1"))


def spike_chain(rng, target) -> Graph:
    """Binary spike input (64) -> 16 -> 8: what a sparse DVS / SHD input looks like."""
    prof = target.profile
    g = Graph("spk", num_steps=6)
    g.add("x", Input((64,), encoding=Encoding("spikes"), layout="TB"))
    g.add("fc0", _dense(rng, prof, 16, 64, exp=0), ["x"])
    g.add("l0", _rand_lif(rng, prof, 16), ["fc0"])
    g.add("fc1", _dense(rng, prof, 8, 16, exp=0), ["l0"])
    g.add("l1", _rand_lif(rng, prof, 8), ["fc1"])
    g.add("o", Output(), ["l1"])
    g.profile = prof
    return g.verify()


def test_event_input_option(tmp_path):
    from npuc.backends.rtl.sim import event_words
    from npuc.errors import RtlSupportError

    t = load_target("fpga:input=events")
    rng = np.random.default_rng(9)
    d = lower(spike_chain(rng, t), t)
    assert d.input_events and d.in_w == 8 + 7  # value bits + position bits (64 words)
    emit(spike_chain(rng, t), tmp_path / "ev", t)
    assert lint(tmp_path / "ev") == [] and lint(tmp_path / "ev", probe=True) == []
    with pytest.raises(RtlSupportError, match="pipeline=1"):
        lower(spike_chain(rng, t), _target("fpga:input=events", 0))
    with pytest.raises(RtlSupportError, match="encoded on chip"):
        lower(delayed_rate(rng, t), t)
    w = np.array([[[0, 3, 0, -1], [0, 0, 0, 0]]])
    got = event_words(w, {"index_bits": 3, "value_bits": 4})
    assert got.tolist() == [[[2, (3 << 3) | 1, (15 << 3) | 3, 0, 0], [0, 0, 0, 0, 0]]]


def delayed_rate(rng, target) -> Graph:
    prof = target.profile
    g = Graph("rate", num_steps=4)
    g.add("x", Input((6,), encoding=Encoding("rate", bits=8), layout="B"))
    g.add("fc", _dense(rng, prof, 5, 6), ["x"])
    g.add("l", _rand_lif(rng, prof, 5), ["fc"])
    g.add("o", Output(), ["l"])
    g.profile = prof
    return g.verify()


@pytest.mark.rtl
def test_event_input_equals_int_engine_and_costs_its_events(tmp_path):
    rng = np.random.default_rng(10)
    t = load_target("fpga")
    g = spike_chain(rng, t)
    x = (rng.random((6, 3, 64)) < 0.1).astype(np.float32)
    ref = simulate(g, x, "int", probe=True)
    cps = {}
    for mode in ("events", "dense"):
        emit(g, tmp_path / mode, load_target(f"fpga:input={mode}"))
        got = run(tmp_path / mode, x, probe=True, progress=False)
        cmp = compare({n: ref.probes[n] for n in ("l0", "l1")}, got.probes, engine="rtl")
        assert cmp.ok and cmp.mismatches == 0, (mode, cmp.format())
        plain = run(tmp_path / mode, x, progress=False)
        np.testing.assert_array_equal(plain.output, ref.output)
        cps[mode] = plain.stats["rtl"]["cycles_per_step"]
        np.testing.assert_array_equal(plain.stats["rtl"]["events"]["x"], (x != 0).sum(-1))
    assert cps["events"] < cps["dense"]
