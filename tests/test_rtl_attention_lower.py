"""Attention lowering without a simulator: exact constant divisions, address tables against
brute force, exact state ranges, lint of the static units, errors and determinism."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from npuc.backends.rtl import RtlSupportError, emit
from npuc.backends.rtl.bounds import Range, overflow, rounding_shift
from npuc.backends.rtl.lower import lower
from npuc.backends.rtl.lower_attention import _linear_numbers, sc_divider
from npuc.backends.rtl.model import AttnPath, Unit
from npuc.ir import QLIF, Encoding, Graph, QAttention, QLinearAttention, QSynapse, ops
from npuc.sim.attention_kernels import round_div
from npuc.targets import load_target

# -- exact constant division of the stochastic decoders -----------------------------------------------


@pytest.mark.parametrize("bits", [3, 8, 16, 32])
def test_sc_divider_is_exact_over_the_whole_counter_range(bits):
    """min(floor(c M / n + 1/2), M) == min((c MA + MB) >> K, M) for every counter value c,
    against exact rationals and against the golden kernel's own integer division."""
    mx = (1 << bits) - 1
    for norm in [*range(1, 49), 64, 100, 384]:
        cmax = max(norm, 48) + 3
        d = sc_divider(mx, norm, cmax)
        c = np.arange(cmax + 1)
        hw = np.minimum((c.astype(object) * d["ma"] + d["mb"]) >> d["k"], mx)
        exact = [min(int(Fraction(int(x) * mx, norm) + Fraction(1, 2)), mx) for x in c]
        golden = torch.clamp(round_div(torch.from_numpy(c), mx, norm), max=mx).tolist()
        assert hw.tolist() == exact == golden, (bits, norm)
        assert (cmax * d["ma"] + d["mb"]).bit_length() < d["ww"]  # the work width holds every product


# -- address tables against brute force -----------------------------------------------------------------


def _apply(graph: Graph, names, x: np.ndarray) -> np.ndarray:
    """Run Reshape/Permute ops on a numpy array (the brute-force data movement)."""
    for name in names:
        op = graph[name].op
        x = x.reshape(graph[name].shape) if isinstance(op, ops.Reshape) else np.transpose(x, op.dims)
    return x


def attention_graph(seed: int):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    heads = [int(h) for h in rng.integers(1, 4, size=int(rng.integers(1, 3)))]
    hh = int(np.prod(heads))
    dk, dv = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    lanes = int(rng.integers(1, 5))
    g = Graph("addr", num_steps=3)
    g.add("xq", ops.Input((n, hh * dk), Encoding("bernoulli", bits=8, seed=1)))
    g.add("xk", ops.Input((hh * dk, m), Encoding("bernoulli", bits=8, seed=2), index=1))  # keys stored transposed
    g.add("xv", ops.Input((m * hh * dv,), Encoding("bernoulli", bits=8, seed=3), index=2))
    nd = len(heads) + 2
    g.add("q1", ops.Reshape((n, *heads, dk)), ["xq"])
    g.add("q2", ops.Permute((*range(1, nd - 1), 0, nd - 1)), ["q1"])
    g.add("k0", ops.Permute((1, 0)), ["xk"])
    g.add("k1", ops.Reshape((m, *heads, dk)), ["k0"])
    g.add("k2", ops.Permute((*range(1, nd - 1), 0, nd - 1)), ["k1"])
    g.add("v1", ops.Reshape((m, *heads, dv)), ["xv"])
    g.add("v2", ops.Permute((*range(1, nd - 1), 0, nd - 1)), ["v1"])
    score, a_int, a_frac = [("and", 0, 0), ("xnor", 1, 0), ("axnor", 5, 2)][seed % 3]
    att = ops.SpikeAttention(score=score, a=a_int / 2**a_frac, order=("qk_v", "q_kv")[seed % 2],
                             q=QAttention(a_int, a_frac, int(rng.integers(-9, 9)), int(rng.integers(0, 5))))
    g.add("att", att, ["q2", "k2", "v2"])
    g.add("b1", ops.Permute((nd - 1, *range(nd - 1))), ["att"])  # (dv, heads..., n)
    g.add("b2", ops.Reshape((-1,)), ["b1"])
    g.add("lif", ops.LIF(q=QLIF(du=4096, dv=0, vth=10, bias_mant=np.array(0))), ["b2"])
    g.add("o", ops.Output(), ["lif"])
    g.profile = load_target("fpga").profile
    return g.verify(), load_target(f"fpga:lanes={lanes}"), dict(n=n, m=m, hh=hh, dk=dk, dv=dv, lanes=lanes)


@pytest.mark.parametrize("seed", range(6))
def test_gather_and_readout_tables_match_brute_force(seed):
    g, target, dm = attention_graph(seed)
    design = lower(g, target)
    (p,) = design.layers[0].paths
    assert isinstance(p, AttnPath)
    gt = p.gather
    rom = [int(w) for w in gt.rom.words]
    bases = [0, gt.base1, gt.base2]
    n, m, hh, dk, dv, lanes = (dm[k] for k in ("n", "m", "hh", "dk", "dv", "lanes"))
    for s, (src, pre, rows) in enumerate([("xq", ["q1", "q2"], n), ("xk", ["k0", "k1", "k2"], m),
                                          ("xv", ["v1", "v2"], m)]):
        size = int(np.prod(g[src].shape))
        for e in range(size):
            onehot = np.zeros(size)
            onehot[e] = 1
            pos = np.argwhere(_apply(g, pre, onehot.reshape(g[src].shape)).reshape(hh, rows, -1) == 1)[0]
            word = rom[bases[s] + e]
            sel, row, fld = word & 1, (word >> 1) & ((1 << gt.rww) - 1), word >> (1 + gt.rww)
            assert (sel, row, fld) == (int(s > 0), pos[0] * rows + pos[1], pos[2] + (dk if s == 2 else 0))
    kc = -(-dv // lanes)
    entries = [int(w) for w in p.iter_rom.words]
    for h in range(hh):
        for i in range(n):
            for d in range(dv):
                out = np.zeros((hh, n, dv))
                out[h, i, d] = 1
                neuron = int(np.argmax(_apply(g, ["b1", "b2"], out.reshape(g["att"].shape))))
                assert entries[neuron] == ((h * n + i) * kc + d // lanes) | ((d % lanes) << p.aaw)


def test_token_dense_decode_rom_matches_brute_force():
    rng = np.random.default_rng(0)
    g = Graph("tok", num_steps=2)
    g.add("x", ops.Input((3, 4, 5), Encoding("bernoulli", bits=8, seed=1)))
    g.add("p", ops.Permute((2, 0, 1)), ["x"])  # (5, 3, 4): 15 tokens of 4 features
    g.add("fc", ops.Dense(np.zeros((6, 4), "f4"), q=QSynapse(rng.integers(-100, 100, (6, 4)), bias=np.arange(6))), ["p"])
    g.add("lif", ops.LIF(q=QLIF(du=4096, dv=0, vth=10, bias_mant=np.array(0))), ["fc"])
    g.add("o", ops.Output(), ["lif"])
    g.profile = load_target("fpga").profile
    path = lower(g.verify(), load_target("fpga:lanes=4")).layers[0].paths[0]
    assert path.kind == 2 and path.adepth == 15 * 2
    featb = path.conv["FEATB"]
    for e in range(60):
        onehot = np.zeros(60)
        onehot[e] = 1
        t, f = np.argwhere(np.transpose(onehot.reshape(3, 4, 5), (2, 0, 1)).reshape(15, 4) == 1)[0]
        word = int(path.decode.words[e])
        assert (word >> featb, word & ((1 << featb) - 1)) == (t, f)
    assert [int(b) for b in path.bias.words] == list(range(6)) * 15  # one bias entry per neuron


# -- exact ranges -----------------------------------------------------------------------------------


def _linear_graph(spec: str, da, b_int: int):
    g = Graph("lin", num_steps=4)
    g.add("q", ops.Input((2, 3), Encoding("bernoulli", bits=8, seed=1)))
    g.add("k", ops.Input((2, 3), Encoding("bernoulli", bits=8, seed=2), index=1))
    g.add("v", ops.Input((2, 2), Encoding("bernoulli", bits=8, seed=3), index=2))
    g.add("la", ops.LinearAttention(q=QLinearAttention(np.asarray(da), b_int, 3, 1)), ["q", "k", "v"])
    g.add("o", ops.Output(), ["la"])
    g.profile = load_target(spec).profile
    return g.verify()


@pytest.mark.parametrize("spec, da, b_int", [
    ("fpga:v_bits=8,v_overflow=wrap", [0, 2048], 9),
    ("fpga:v_bits=7,v_overflow=saturate_sym,decay_rounding=trunc0", [100, 4000], -5),
    ("fpga:v_bits=6,v_overflow=wrap_sym,decay_rounding=round_half_up", [0, 1], 3),
    ("fpga:v_overflow=none", 1024, 7),
])
def test_linear_state_range_is_invariant(spec, da, b_int):
    """Every state the update can reach from the range stays in it (exhaustive), and the
    unit's state width holds the range."""
    g = _linear_graph(spec, da, b_int)
    prof = g.profile
    x = _linear_numbers(g, "la", {n: _pop(g, n) for n in ("q", "k", "v")}, prof)
    s_r = x["s_r"]
    mults = np.unique(x["md"])
    outer = sorted({b_int * v * k for v in (0, 1) for k in (0, 1)})
    vb, vmode = (prof.v_bits, prof.v_overflow) if prof.v_overflow != "none" else (0, "none")
    for s in range(s_r.lo, s_r.hi + 1):
        for mult in mults:
            dec = rounding_shift(s * int(mult), prof.decay_bits, prof.decay_rounding)
            for o in outer:
                y = overflow(Range(dec + o, dec + o), vb, vmode).lo
                assert s_r.lo <= y <= s_r.hi, (s, mult, o, y, s_r)
    unit = [lay for lay in lower(g, load_target("fpga")).layers if isinstance(lay, Unit)][0]
    assert int(unit.params["SWD"]) >= s_r.bits


def _pop(g: Graph, name: str):
    from npuc.backends.rtl.lower import _input_pop

    return _input_pop(g, name)


# -- errors -----------------------------------------------------------------------------------------------


def _qkv(g: Graph, n: int = 3, d: int = 4):
    g.add("xq", ops.Input((n, d), Encoding("bernoulli", bits=8, seed=1)))
    g.add("xk", ops.Input((n, d), Encoding("bernoulli", bits=8, seed=2), index=1))
    g.add("xv", ops.Input((n, d), Encoding("bernoulli", bits=8, seed=3), index=2))


def _finish(g: Graph, src: str, spec: str = "fpga") -> Graph:
    g.add("lif", ops.LIF(q=QLIF(du=4096, dv=0, vth=10, bias_mant=np.array(0))), [src])
    g.add("o", ops.Output(), ["lif"])
    g.profile = load_target(spec).profile
    return g.verify()


def test_attention_errors_name_the_node_and_the_fix():
    fpga = load_target("fpga")
    g = Graph("e1", num_steps=2)
    _qkv(g)
    g.add("fc", ops.Dense(np.zeros((4, 4), "f4"), q=QSynapse(np.ones((4, 4), np.int64))), ["xq"])
    g.add("ml", ops.LIF(spike="multilevel", levels=4, compare="ge", q=QLIF(du=4096, dv=0, vth=5, bias_mant=np.array(0))), ["fc"])
    g.add("att", ops.SpikeAttention(q=QAttention(0, 0, 1, 0)), ["ml", "xk", "xv"])
    with pytest.raises(RtlSupportError, match="'att'.*'ml' carries graded values"):
        lower(_finish(g, "att"), fpga)

    g = Graph("e2", num_steps=2)
    _qkv(g, 2, 4)
    g.add("xp", ops.Input((2, 4, 4), Encoding("bernoulli", bits=8, seed=4), index=3))
    g.add("pool", ops.SumPool2d(2), ["xp"])  # (2, 2, 2)
    g.add("qr", ops.Reshape((2, 4)), ["pool"])
    g.add("att", ops.SpikeAttention(q=QAttention(0, 0, 1, 0)), ["qr", "xk", "xv"])
    with pytest.raises(RtlSupportError, match="'pool' \\(SumPool2d\\) between a population and the attention"):
        lower(_finish(g, "att"), fpga)

    g = Graph("e3", num_steps=2)
    _qkv(g)
    g.add("att", ops.SpikeAttention(), ["xq", "xk", "xv"])
    with pytest.raises(RtlSupportError, match="attention 'att' has no integer parameters: run the quantize pass"):
        lower(_finish(g, "att"), fpga)

    g = Graph("e4", num_steps=3)
    _qkv(g)
    g.add("d1", ops.Reshape((3, 4)), [("xk", None, 1)])
    g.add("d2", ops.Reshape((3, 4)), [("d1", None, 1)])
    g.add("att", ops.SpikeAttention(q=QAttention(0, 0, 1, 0)), ["xq", "d2", "xv"])
    with pytest.raises(RtlSupportError, match="input from 'xk' has delay 2"):
        lower(_finish(g, "att"), fpga)

    g = Graph("e5", num_steps=2)
    _qkv(g)
    g.add("la", ops.LinearAttention(q=QLinearAttention(np.array(0), 1, 1, 0)), ["xq", "xk", "xv"])
    g.add("o", ops.Output(), ["la"])
    g.profile = load_target("fpga:v_overflow=none").profile
    with pytest.raises(RtlSupportError, match="linear attention 'la': the state S has no finite bound"):
        lower(g.verify(), fpga)


# -- determinism, identifiers, lint of the static units ----------------------------------------------------------


def test_attention_emit_is_deterministic_and_sanitized(tmp_path):
    g = Graph("attn.block:1", num_steps=3)
    g.add("x.q", ops.Input((4, 6), Encoding("bernoulli", bits=8, seed=1)))
    g.add("h.q", ops.Reshape((4, 2, 3)), ["x.q"])
    g.add("p:q", ops.Permute((1, 0, 2)), ["h.q"])
    g.add("s-c", ops.StochasticAttention(bits=9, seed=3, seed2=5), ["p:q", "p:q", "p:q"])
    g.add("a:t", ops.SpikeAttention(score="xnor", q=QAttention(1, 0, 3, 2)), ["p:q", "s-c", "p:q"])
    g.add("m-1", ops.Reshape((24,)), ["a:t"])
    g.add("n.1", ops.LIF(q=QLIF(du=4096, dv=0, vth=10, bias_mant=np.array(0))), ["m-1"])
    g.add("o", ops.Output(), ["n.1"])
    g.profile = load_target("fpga").profile
    g.verify()
    a = emit(g, tmp_path / "a", "fpga:lanes=2")
    b = emit(g, tmp_path / "b", "fpga:lanes=2")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    assert all(c not in p.stem for p in a for c in ".:-" if p.suffix == ".v")
    from npuc.backends.rtl import lint as lint_design

    assert lint_design(tmp_path / "a") == [] and lint_design(tmp_path / "a", probe=True) == []


@pytest.mark.parametrize("seed", range(6))
def test_emitted_attention_designs_lint_clean(seed, tmp_path):
    """Random geometries, both orders, every score: the emitted Verilog (all attention units'
    parameterizations) is clean under verilator --lint-only -Wall, PROBE 0 and 1."""
    from npuc.backends.rtl import lint as lint_design

    g, target, _ = attention_graph(seed)
    emit(g, tmp_path / "rtl", target)
    assert lint_design(tmp_path / "rtl") == [] and lint_design(tmp_path / "rtl", probe=True) == []
