"""RTL neuron update unit (npuc_lif + layer template) against the golden integer engine.

Every combination of reset mode x reset timing x compare x spike type (63
valid ones) appears in one of six designs; each design runs under its own
numeric profile variant (rounding modes, every overflow mode for act/u/v,
narrow adders, offsets, shifts). A design packs 10-11 independent LIF layers
fed from one current input, so one Verilator build checks many neuron
configurations (a third of the layers decay per neuron: their du / dv vectors, part of the
skeleton, are read from a decay ROM into npuc_lif's mu / mv); each build then runs two random cases (new
weights, biases, floors and inputs loaded from memory files, same hardware) and compares
every layer's spikes, membrane v and current i with
``npuc.sim.simulate(graph, x, "int", probe=True)`` step by step.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from npuc.backends.rtl import emit, lint, run
from npuc.ir import LIF, QLIF, Dense, Encoding, Graph, Input, Output, QInput, QSynapse
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target

pytestmark = pytest.mark.rtl

FPGA = load_target("fpga")
P = FPGA.profile

PROFILES = [
    ("default", P),
    ("trunc0_wrap", dataclasses.replace(P, decay_rounding="trunc0", u_overflow="wrap", v_overflow="wrap",
                                        u_bits=10, v_bits=11)),
    ("half_up_act", dataclasses.replace(P, decay_rounding="round_half_up", act_bits=9, act_overflow="saturate",
                                        act_shift=2, vth_shift=2, du_offset=1, u_overflow="saturate_sym",
                                        v_overflow="saturate_sym")),
    ("arith15", dataclasses.replace(P, arith_bits=15, u_overflow="wrap_sym", v_overflow="saturate_sym")),
    ("wrap_sym", dataclasses.replace(P, decay_bits=8, act_bits=10, act_overflow="wrap", u_overflow="saturate",
                                     v_overflow="wrap_sym", v_bits=13, dv_offset=2)),
    ("none_arith", dataclasses.replace(P, decay_rounding="trunc0", arith_bits=18, u_overflow="none",
                                       v_overflow="none", act_overflow="wrap_sym", act_bits=12)),
]

COMBOS = [c for c in itertools.product(("subtract", "value", "none"), ("same", "delayed", "delayed_charge"),
                                       ("gt", "ge"), ("binary", "ternary", "multilevel", "bernoulli"))
          if not (c[3] == "multilevel" and c[2] == "gt")]
N_IN, N, T, B = 8, 6, 12, 3


def _skeleton(k: int, prof, seed: int) -> list[dict]:
    """Scalar neuron parameters (Verilog parameters: fixed per build) for design k."""
    rng = np.random.default_rng(1000 + seed)
    d = prof.decay_unity
    specs = []
    for j, (reset, timing, compare_, spike) in enumerate(COMBOS[k::len(PROFILES)]):
        du = int(rng.choice([d - prof.du_offset, 0, rng.integers(0, d - prof.du_offset + 1)]))
        if prof.u_overflow == "none" and du == 0:
            du = d // 2  # a non-decaying current without an overflow rule is only bounded by the adder wrap
        dv = int(rng.choice([0, rng.integers(0, d - prof.dv_offset + 1), d // 8]))
        vth = int(rng.integers(40, 1500)) >> (prof.vth_shift if spike != "bernoulli" else 0)
        spec = dict(reset=reset, reset_timing=timing, compare=compare_, spike=spike,
                    du=du, dv=dv, vth=max(vth, 3), reset_value=int(rng.integers(-200, 200)),
                    v_init=int(rng.integers(-400, 400)), vmin=["none", "scalar", "array"][j % 3],
                    bias_array=bool(j % 2), bias=int(rng.integers(-150, 150)), vmin_scalar=-int(rng.integers(0, 3000)))
        if spike == "ternary":
            spec["vth_lo"] = int(rng.choice([-int(rng.integers(10, 1500)), spec["vth"] // 3])) >> prof.vth_shift
        if spike == "multilevel":
            # unbounded graded spikes need a membrane the profile bounds (saturate/wrap)
            bounded = prof.v_overflow in ("saturate", "saturate_sym", "wrap")
            spec["levels"] = [None if bounded else 4, 3, 5][j % 3]
        if spike == "bernoulli":
            spec.update(bits=8, seed=int(rng.integers(1, 255)), scale=float(rng.choice([1 / 64, 1 / 300, 0.02])))
        if j % 3 == 1:  # per-neuron decays: dv always, du in every other such layer
            spec["dv"] = rng.integers(0, d - prof.dv_offset + 1, size=N)
            if j % 2:
                lo = d // 4 if prof.u_overflow == "none" else 0  # see du above
                spec["du"] = rng.integers(lo, d - prof.du_offset + 1, size=N)
        specs.append(spec)
    return specs


def _graph(specs: list[dict], prof, case: int) -> Graph:
    rng = np.random.default_rng(case)
    g = Graph("neurons", num_steps=T)
    g.add("x", Input((N_IN,), encoding=Encoding("current"), layout="TB", q=QInput(frac_bits=4, bits=8)))
    wmax = 2 ** (prof.weight_bits - 1)
    for j, s in enumerate(specs):
        w = rng.integers(-wmax, wmax, size=(N, N_IN))
        g.add(f"fc.{j}", Dense(np.zeros((N, N_IN), np.float32), q=QSynapse(w, weight_exp=-3)), ["x"])
        # per-neuron arrays live in memories (new values per case); scalars are hardware constants
        bias = rng.integers(-150, 150, size=N) if s["bias_array"] else np.array(s["bias"])
        vmin = None
        if s["vmin"] == "scalar":
            vmin = np.array(s["vmin_scalar"])
        elif s["vmin"] == "array":
            vmin = -rng.integers(0, 3000, size=N)
        q = QLIF(du=s["du"], dv=s["dv"], vth=s["vth"], vth_lo=s.get("vth_lo"), bias_mant=bias, bias_exp=1,
                 reset_value=s["reset_value"], v_init=s["v_init"], v_min=vmin, scale=s.get("scale", 1.0))
        lif = LIF(threshold=1.0, threshold_lo=-1.0 if s["spike"] == "ternary" else None, reset=s["reset"],
                  reset_timing=s["reset_timing"], compare=s["compare"], spike=s["spike"], levels=s.get("levels"),
                  bits=s.get("bits", 16), seed=s.get("seed", 1), v_min=None if vmin is None else -1.0, q=q)
        g.add(f"lif.{j}", lif, [f"fc.{j}"])
        g.add(f"out.{j}", Output(index=j), [f"lif.{j}"])
    g.profile = prof
    return g.verify()


@pytest.mark.parametrize("k", range(len(PROFILES)), ids=[name for name, _ in PROFILES])
def test_neuron_options_bit_exact(k, tmp_path):
    name, prof = PROFILES[k]
    specs = _skeleton(k, prof, k)
    builds = set()
    for case in range(2):
        g = _graph(specs, prof, 100 * k + case)
        out = tmp_path / f"case{case}"
        emit(g, out, FPGA)
        assert lint(out, probe=True) == []
        x = np.random.default_rng(case).uniform(-9, 9, size=(T, B, N_IN)).astype(np.float32)
        ref = simulate(g, x, "int", probe=True)
        got = run(out, x, probe=True, progress=False)
        ref_traces = {n: ref.probes[n] for n in ref.probes if n.startswith("lif.")}
        cmp = compare(ref_traces, got.probes, engine="rtl")
        assert cmp.ok and cmp.mismatches == 0, f"profile {name}, case {case}:\n{cmp.format()}"
        assert set(cmp.compared) >= {f"lif.{j}.{p}" for j in range(len(specs)) for p in ("spikes", "v")}
        for a, b in zip(ref.outputs, got.outputs):
            np.testing.assert_array_equal(a, b)
        builds.add(got.stats["rtl"]["build_dir"])
        spikes = np.concatenate([ref.probes[f"lif.{j}"]["spikes"].reshape(-1) for j in range(len(specs))])
        assert 0.02 < np.mean(spikes != 0) < 0.98, "stimulus should make neurons both fire and stay silent"
    assert len(builds) == 1, "new weights and inputs must reuse the same hardware build"


def test_every_option_is_covered():
    seen = set()
    for k, (_, prof) in enumerate(PROFILES):
        for s in _skeleton(k, prof, k):
            seen.add((s["reset"], s["reset_timing"], s["compare"], s["spike"]))
    assert seen == set(COMBOS) and len(COMBOS) == 63
    for k, (_, prof) in enumerate(PROFILES):  # every profile has per-neuron dv, and du, somewhere
        specs = _skeleton(k, prof, k)
        assert any(np.ndim(s["dv"]) for s in specs) and any(np.ndim(s["du"]) for s in specs)
    assert {p.decay_rounding for _, p in PROFILES} == {"trunc0", "floor", "round_half_up"}
    modes = {p.u_overflow for _, p in PROFILES} | {p.v_overflow for _, p in PROFILES}
    assert modes == {"wrap", "wrap_sym", "saturate", "saturate_sym", "none"}
