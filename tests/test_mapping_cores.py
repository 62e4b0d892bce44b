"""map-cores: every per-core limit holds, messages equal a brute-force count, errors name the layer.

Each core's use is recomputed here from the independent torch reference of the
synapses (`test_mapping_connectivity.reference_synapses`) and the per-neuron
cores decoded from ``graph.meta["mapping"]``; nothing is taken from the
packer's own bookkeeping.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_mapping_connectivity import (
    _w,
    conv1d_token_graph,
    conv_net,
    random_graph,
    reference_synapses,
)

from npuc.ir import LIF, Add, Conv2d, Dense, Graph, Input, Output
from npuc.ir.serialize import graph_to_json
from npuc.passes.base import PassContext, PassError, run_pipeline
from npuc.passes.mapping import MapCores, map_cores, neuron_cores
from npuc.passes.placement import PlaceCores
from npuc.targets import CoreResources, load_target

LOIHI = load_target("loihi2")


def target_with(**limits) -> object:
    base = dict(neurons_per_core=4096, synapse_memory_bits_per_core=1 << 20, input_axons_per_core=4096,
                output_axons_per_core=4096, neuron_groups_per_core=8, cores_per_chip=128, mesh=(8, 16), chips=1)
    base.update(limits)
    return dataclasses.replace(LOIHI, cores=CoreResources(**base))


def brute_force(graph: Graph, ref, rates: dict[str, np.ndarray]) -> dict:
    """Per-core usage and messages from reference synapses and decoded per-neuron cores."""
    lifs = list(ref)
    core_of = {d: neuron_cores(graph, d) for d in lifs}
    ncores = len(graph.meta["mapping"]["cores"])
    bits = graph.meta["mapping"]["weight_bits"]
    neurons = np.zeros(ncores, int)
    synapses = np.zeros(ncores, int)
    inputs = [set() for _ in range(ncores)]  # (population, neuron) feeding the core
    groups = [set() for _ in range(ncores)]
    for d in lifs:
        np.add.at(neurons, core_of[d], 1)
        for c in np.unique(core_of[d]):
            groups[c].add(d)
        for s, m in ref[d].items():
            src, dst = np.nonzero(m)
            np.add.at(synapses, core_of[d][dst], 1)
            for a, c in zip(src.tolist(), core_of[d][dst].tolist()):
                inputs[c].add((s, a))
    outputs = np.zeros(ncores, int)
    messages = 0.0
    for c in range(ncores):
        for s, a in inputs[c]:
            messages += float(rates[s][a])
            if s in core_of:
                outputs[core_of[s][a]] += 1  # the pair (s:a, core c) leaves s:a's core
    return {"neurons": neurons, "synapse_bits": synapses * bits, "input_axons": np.array([len(i) for i in inputs]),
            "output_axons": outputs, "groups": np.array([len(g) for g in groups]), "messages": messages,
            "pairs": sum(len(i) for i in inputs)}


def _rates(graph, rng, kind):
    out = {}
    for n in graph:
        if isinstance(n.op, (LIF, Input)):
            size = int(np.prod(n.shape))
            if kind == "array":
                n.meta["rate"] = rng.random(n.shape).astype(np.float32)
                out[n.name] = np.asarray(n.meta["rate"], np.float64).ravel()
            elif kind == "scalar":
                n.meta["rate"] = float(rng.random())
                out[n.name] = np.full(size, n.meta["rate"])
            else:
                out[n.name] = np.ones(size)
    return out


def _fit_limits(graph, ref, rng, tight: bool) -> dict:
    """Random per-core limits that every single neuron fits (tight: close to that minimum)."""
    fan_in, distinct = 1, 1
    fan_out: dict[str, np.ndarray] = {}
    for srcs in ref.values():
        fi = sum(m.sum(axis=0) for m in srcs.values())
        fan_in = max(fan_in, int(np.max(fi)))
        distinct = max(distinct, int(np.max(fi)))
        for s, m in srcs.items():
            fan_out[s] = fan_out.get(s, 0) + m.sum(axis=1)
    # a neuron's destination neurons bound its destination cores (one neuron per core at worst)
    out_need = max(int(v.max()) for v in fan_out.values())
    scale = (lambda v: int(v * rng.uniform(1.0, 1.6))) if tight else (lambda v: int(v * rng.uniform(2, 20)))
    return dict(neurons_per_core=int(rng.integers(1, 6) if tight else rng.integers(8, 400)),
                synapse_memory_bits_per_core=8 * scale(fan_in), input_axons_per_core=scale(distinct),
                output_axons_per_core=scale(out_need) + 2, neuron_groups_per_core=int(rng.integers(1, 4)),
                cores_per_chip=int(rng.choice([8, 16, 128])), mesh=(4, 4) if tight else (8, 16), chips=1)


def _check(graph, ref, rates, limits):
    m = graph.meta["mapping"]
    bf = brute_force(graph, ref, rates)
    lim = {"neurons": limits["neurons_per_core"], "synapse_bits": limits["synapse_memory_bits_per_core"],
           "input_axons": limits["input_axons_per_core"], "output_axons": limits["output_axons_per_core"],
           "groups": limits["neuron_groups_per_core"]}
    for r, cap in lim.items():
        assert bf[r].max(initial=0) <= cap, (r, int(bf[r].max()), cap)
        # the mapping reports exactly the independently recomputed use
        assert [c["usage"][r] for c in m["cores"]] == bf[r].tolist(), r
    assert m["totals"]["messages_per_step"] == pytest.approx(bf["messages"], rel=1e-9, abs=1e-9)
    assert m["totals"]["multicast_pairs"] == bf["pairs"]
    # every neuron is on exactly one core: slice sizes add up to population sizes
    for d in ref:
        size = int(np.prod(graph[d].shape))
        assert sum(s["neurons"] for c in m["cores"] for s in c["slices"] if s["node"] == d) == size
        assert graph[d].meta["cores"] == sorted(set(neuron_cores(graph, d).tolist()))
    assert m["totals"]["cores"] >= m["totals"]["capacity_lower_bound"]
    json.dumps(graph_to_json(graph)[0])  # the mapping saves with the graph (traffic arrays in its npz)


@pytest.mark.parametrize("seed", range(24))
def test_limits_and_messages_on_random_graphs(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_graph(seed)
    ref = reference_synapses(g)
    rates = _rates(g, rng, ["array", "scalar", "none"][seed % 3])
    limits = _fit_limits(g, ref, rng, tight=seed % 2 == 0)
    order = "chw" if seed % 4 == 1 else "tiled"
    map_cores(g, target_with(**limits), order=order)
    _check(g, ref, rates, limits)


@pytest.mark.parametrize("order", ["tiled", "chw"])
def test_conv_net_limits_and_tiled_beats_chw(order):
    g = conv_net(hw=16, chans=(4, 8))
    ref = reference_synapses(g)
    limits = dict(neurons_per_core=96, synapse_memory_bits_per_core=8 * 2500, input_axons_per_core=600,
                  output_axons_per_core=400, neuron_groups_per_core=2, cores_per_chip=128, mesh=(8, 16), chips=1)
    m = map_cores(g, target_with(**limits), order=order)
    _check(g, ref, {n: np.ones(int(np.prod(g[n].shape))) for n in ("x", *ref)}, limits)
    if order == "tiled":
        naive = map_cores(g.copy(), target_with(**limits), order="chw")["totals"]
        assert m["totals"]["messages_per_step"] < 0.5 * naive["messages_per_step"]
        assert m["totals"]["cores"] <= naive["cores"]
        til = {p["node"]: p["tiling"] for p in m["populations"]}
        assert til["lif0"]["order"] == "tiled" and til["lif0"]["tile"][0] == 4  # all channels per tile


@pytest.mark.parametrize("neurons", [1, 3, 8, 64])
def test_two_axis_populations(neurons):
    """(C, L) conv1d and (tokens, features) populations: tiles along any axis, all limits hold."""
    g = conv1d_token_graph()
    ref = reference_synapses(g)
    limits = dict(neurons_per_core=neurons, synapse_memory_bits_per_core=8 * 60, input_axons_per_core=45,
                  output_axons_per_core=64, neuron_groups_per_core=2, cores_per_chip=16, mesh=(4, 4), chips=1)
    map_cores(g, target_with(**limits))
    _check(g, ref, {n: np.ones(int(np.prod(g[n].shape))) for n in ("x", *ref)}, limits)


def test_fixed_tile_option():
    g = conv_net(hw=16, chans=(4, 8))
    m = map_cores(g, target_with(neurons_per_core=128), tile=(4, 8))
    assert {p["node"]: p["tiling"].get("tile") for p in m["populations"]}["lif0"] == [4, 4, 8]
    assert len(g["lif0"].meta["cores"]) == 4 * 2  # 16x16 map in 4x8 tiles of 128 neurons
    boxes = [s["boxes"] for c in m["cores"] for s in c["slices"] if s["node"] == "lif0"]
    assert all(b[0] == [0, 4] for [b] in boxes)  # every tile holds all channels
    assert sorted([b[1], b[2]] for [b] in boxes) == sorted(
        [[y, y + 4], [x, x + 8]] for y in range(0, 16, 4) for x in range(0, 16, 8))


def _dense_graph(fan_in: int) -> Graph:
    rng = np.random.default_rng(0)
    g = Graph("fc", num_steps=2)
    g.add("x", Input((fan_in,)))
    g.add("fc_big", Dense(_w(rng, (4, fan_in))), ["x"])
    g.add("wide", LIF(), ["fc_big"])
    g.add("o", Output(), ["wide"])
    return g.verify()


def test_fan_in_beyond_synapse_memory_names_layer_and_limit():
    g = _dense_graph(300)
    with pytest.raises(PassError, match=r"node 'wide'.*300 incoming synapses.*synapse_memory_bits_per_core"):
        map_cores(g, target_with(synapse_memory_bits_per_core=8 * 299))
    map_cores(g, target_with(synapse_memory_bits_per_core=8 * 300))  # exactly fits


def test_fan_in_beyond_input_axons_goes_through_relays():
    """300 sources > 256 axons: two balanced blocks of 150 sources each feed one relay per neuron
    (8 relays), and the neuron reads its 2 relays (the Lava backend emits them from the meta)."""
    g = _dense_graph(300)
    m = map_cores(g, target_with(input_axons_per_core=256))
    assert g["wide"].meta["fan_in_relays"] == {"axons": 256, "blocks": [["x", 0, 150], ["x", 150, 300]]}
    pops = {p["node"]: p for p in m["populations"]}
    assert pops["wide.relay"]["neurons"] == 8 and pops["wide.relay"]["synapses"] == 4 * 300
    assert pops["wide"]["synapses"] == 8
    assert all(c["usage"]["input_axons"] <= 256 for c in m["cores"])
    assert set(g["wide"].meta["relay_cores"]) | set(g["wide"].meta["cores"]) == set(range(m["totals"]["cores"]))
    map_cores(g, target_with(input_axons_per_core=300))  # fits again: the relays disappear
    assert "fan_in_relays" not in g["wide"].meta


def test_conv_fan_in_error_through_pipeline():
    rng = np.random.default_rng(0)
    g = Graph("c", num_steps=2)
    g.add("x", Input((16, 8, 8)))
    g.add("conv_a", Conv2d(_w(rng, (4, 16, 3, 3)), padding=1), ["x"])
    g.add("lif_a", LIF(), ["conv_a"])
    g.add("o", Output(), ["lif_a"])
    ctx = PassContext(target=target_with(input_axons_per_core=100))
    with pytest.raises(PassError, match=r"node 'lif_a'.*144 distinct source neurons.*input_axons_per_core = 100"):
        run_pipeline(g.verify(), [MapCores()], ctx)


def test_chips_grow_with_warning_or_fail_when_fixed():
    g = conv_net(hw=16, chans=(4, 8))
    t = target_with(neurons_per_core=64, cores_per_chip=4, mesh=(2, 2), chips=1)
    ctx = PassContext(target=t)
    q = run_pipeline(g, [MapCores(), PlaceCores(seed=1)], ctx)
    m = q.meta["mapping"]
    assert m["chips"] == -(-m["totals"]["cores"] // 4) > 1
    assert any("chips" in w for w in ctx.warnings)
    pos = q.meta["placement"]["positions"]
    assert len({tuple(p) for p in pos}) == len(pos) and max(p[0] for p in pos) < 2 * m["chips"]
    with pytest.raises(PassError, match="needs .* cores = .* chips"):
        run_pipeline(g, [MapCores(fixed_chips=True)], PassContext(target=t))


def test_pipeline_meta_survives_save_and_load(tmp_path):
    g = conv_net(hw=8, chans=(2, 4))
    q = run_pipeline(g, [MapCores(), PlaceCores()], PassContext(target=LOIHI))
    q.save(tmp_path / "g")
    r = Graph.load(tmp_path / "g")
    want, got = dict(q.meta["mapping"]), dict(r.meta["mapping"])
    tw, tg = want.pop("traffic"), got.pop("traffic")  # arrays, kept in the graph's npz
    assert got == json.loads(json.dumps(want))
    assert tw.keys() == tg.keys() and all(np.array_equal(tg[k], tw[k]) and tg[k].dtype == tw[k].dtype for k in tw)
    assert r.meta["placement"]["positions"] == q.meta["placement"]["positions"]
    assert r["lif0"].meta["cores"] == q["lif0"].meta["cores"]


def test_recurrent_output_axons_are_enforced():
    """A recurrent layer whose own spikes fan out widely: out-axon use is only known after
    packing, so the fix-up must split cores until every core fits."""
    rng = np.random.default_rng(3)
    g = Graph("rec", num_steps=2)
    g.add("x", Input((40,)))
    g.add("fin", Dense(_w(rng, (60, 40), 0.5)), ["x"])
    g.add("rec", Dense(_w(rng, (60, 60), 0.9)), [("l", None, 1)])
    g.add("sum", Add(), ["fin", "rec"])
    g.add("l", LIF(), ["sum"])
    g.add("o", Output(), ["l"])
    g.verify()
    ref = reference_synapses(g)
    limits = dict(neurons_per_core=20, synapse_memory_bits_per_core=8 * 400, input_axons_per_core=100,
                  output_axons_per_core=40, neuron_groups_per_core=1, cores_per_chip=64, mesh=(8, 8), chips=1)
    m = map_cores(g, target_with(**limits))
    _check(g, ref, {"x": np.ones(40), "l": np.ones(60)}, limits)
    assert m["totals"]["output_axon_splits"] > 0


def test_bad_rate_is_an_error():
    g = conv_net(hw=8, chans=(2, 4))
    g["lif0"].meta["rate"] = np.ones(5)
    with pytest.raises(PassError, match="node 'lif0'.*rate"):
        map_cores(g, LOIHI)
