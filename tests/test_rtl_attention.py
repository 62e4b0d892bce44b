"""RTL attention units in Verilator against the golden integer engine, bit for bit.

* coincidence attention (SpikeAttention paths, `npuc_attn`): random designs with four
  attention paths each (AND, XNOR, a-XNOR with random ``a``; orders qk_v and q_kv; random
  tokens, head axes folded through Reshape/Permute, head dims, lanes, negative multipliers,
  a delayed key input, self-attention, a residual Add with a token-wise Dense path);
* stochastic attention (`npuc_sc_attn`): random LFSR widths (3..32), seeds and norms, two
  units per design (one reading the other's output spikes), outputs into a token-wise Dense;
* linear attention / SSM (`npuc_linattn`): scalar, per-channel and per-element decays, graded
  and binary inputs, profiles with wrapping / symmetric saturation and every decay rounding;
* whole blocks through the real compiler (`npuc.compile(..., target="fpga")` then
  `Compiled.verify(x, "rtl")`): the IR Spikformer block with AND and XNOR scores and a
  stochastic-attention block;
* stochastic-computing statistics in RTL (`npuc_sc_stats`): the counts equal the exact LFSR
  model; the AND of independent streams estimates ``p1 p2`` with variance ``p(1-p)/T``; one
  LFSR shared by both inputs gives ``min(p1, p2)``;
* Yosys synthesis of a design holding all three unit kinds.

Each design is built once and run on several random input batches (new inputs, same build),
the last one after a reset in the middle of a step.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import add_qkv_heads

import npuc
from npuc.backends.rtl import emit, lint, rtl_report, run, sc_stats
from npuc.ir import QLIF, Encoding, Graph, QAttention, QInput, QLinearAttention, QSynapse, ops
from npuc.sim import simulate
from npuc.sim.compare import compare
from npuc.targets import load_target

pytestmark = pytest.mark.rtl


def _lif(rng, vth: int, du: int = 4096, dv: int | None = None, **kw) -> ops.LIF:
    dv = int(rng.integers(0, 1500)) if dv is None else dv
    return ops.LIF(q=QLIF(du=du, dv=dv, vth=vth, bias_mant=np.array(0)), **kw)


def _dense(rng, n_out: int, n_in: int, exp: int = -2, bias: bool = False) -> ops.Dense:
    b = rng.integers(-20, 20, n_out) if bias else None
    return ops.Dense(np.zeros((n_out, n_in), np.float32),
                     q=QSynapse(rng.integers(-128, 128, (n_out, n_in)), weight_exp=exp, bias=b))


def _heads(g: Graph, src, tokens: int, heads: list[int], d: int, tag: str, delay: int = 0) -> str:
    """(tokens, H * d) -> (*heads, tokens, d): the Spikformer head split."""
    r = g.add(f"{tag}_r", ops.Reshape((tokens, *heads, d)), [(src, None, delay)])
    nd = len(heads) + 2
    return g.add(f"{tag}_p", ops.Permute((*range(1, nd - 1), 0, nd - 1)), [r])


def _qkv_inputs(g: Graph, n_tok: int, m_tok: int, dqk: int, dv: int) -> None:
    """Bernoulli-coded inputs ``xq`` (``[n_tok, dqk]``), ``xk`` and ``xv`` (``m_tok`` tokens)."""
    g.add("xq", ops.Input((n_tok, dqk), Encoding("bernoulli", bits=10, seed=3), layout="B"))
    g.add("xk", ops.Input((m_tok, dqk), Encoding("bernoulli", bits=10, seed=5), layout="B", index=1))
    g.add("xv", ops.Input((m_tok, dv), Encoding("bernoulli", bits=10, seed=9), layout="B", index=2))


def _check(g: Graph, art, xs: list, nodes: list[str]) -> dict:
    """Run every input batch on one build; compare the nodes' probes, outputs and event counts.
    The last batch runs after a reset in the middle of step 1 (30 cycles after its inputs,
    inside the attention phases), which must leave no trace."""
    builds = set()
    stats = None
    for b, x in enumerate(xs):
        ref = simulate(g, x, "int", probe=True)
        got = run(art, x, probe=True, progress=False, reset_check=(1, 30) if b == len(xs) - 1 else None)
        cmp = compare({n: ref.probes[n] for n in nodes}, got.probes, engine="rtl")
        assert cmp.ok and cmp.mismatches == 0, cmp.format()
        for a, b in zip(ref.outputs, got.outputs):
            np.testing.assert_array_equal(a, b)
        for pop, counts in got.stats["rtl"]["events"].items():
            port = "spikes" if isinstance(g[pop].op, ops.LIF) else "out"
            nz = ref.probes[pop][port] != 0
            np.testing.assert_array_equal(counts, nz.reshape(nz.shape[0], nz.shape[1], -1).sum(-1))
        builds.add(got.stats["rtl"]["build_dir"])
        stats = (ref, got)
    assert len(builds) == 1
    return {"ref": stats[0], "got": stats[1]}


# -- coincidence attention ------------------------------------------------------------------------


def coincidence_graph(seed: int):
    """Four SpikeAttention paths over shared Q/K/V populations with random geometry."""
    rng = np.random.default_rng(seed)
    lanes = int(rng.integers(1, 5))
    target = load_target(f"fpga:lanes={lanes}")
    n_tok = int(rng.integers(1, 7))
    m_tok = n_tok if rng.random() < 0.5 else int(rng.integers(1, 7))
    heads = [int(h) for h in rng.integers(1, 3, size=int(rng.integers(0, 3)))]
    hh = int(np.prod(heads)) if heads else 1
    dk, dv = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    g = Graph(f"coincidence{seed}", num_steps=int(rng.integers(3, 7)))
    _qkv_inputs(g, n_tok, m_tok, hh * dk, hh * dv)
    # a neuron population as a source: token-wise Dense of a permuted input (decode ROM) + LIF
    g.add("xqt", ops.Permute((1, 0)), ["xq"])
    g.add("fct", _dense(rng, n_tok, n_tok), ["xqt"])
    g.add("lt", _lif(rng, 30), ["fct"])
    g.add("lq", ops.Permute((1, 0)), ["lt"])
    configs = []
    for j, score in enumerate(["and", "axnor", "xnor", "axnor"]):
        order = ["qk_v", "q_kv", str(rng.choice(["qk_v", "q_kv"])), "qk_v"][j]
        a_frac = int(rng.integers(0, 3)) if score == "axnor" else 0
        a_int = {"and": 0, "xnor": 1}.get(score, int(rng.integers(1, 5)))
        q_src = "lq" if j == 1 else "xq"
        k_src = "xq" if j == 2 and n_tok == m_tok else "xk"  # self-attention: Q and K from one population
        qp = _heads(g, q_src, n_tok, heads, dk, f"q{j}")
        kp = _heads(g, k_src, m_tok, heads, dk, f"k{j}", delay=1 if j == 3 else 0)
        vp = _heads(g, "xv", m_tok, heads, dv, f"v{j}")
        a = {"and": 0.0, "xnor": 1.0}.get(score, a_int / 2**a_frac)
        mult = int(rng.integers(1, 9)) * (-1 if j == 2 else 1)
        op = ops.SpikeAttention(score=score, a=a, order=order,
                                q=QAttention(a_int=a_int, a_frac=a_frac, mult=mult, shift=int(rng.integers(0, 4))))
        att = g.add(f"att{j}", op, [qp, kp, vp])
        nd = len(heads) + 2
        back = g.add(f"back{j}", ops.Permute((nd - 2, *range(nd - 2), nd - 1)), [att])
        cur = g.add(f"merge{j}", ops.Reshape((n_tok, hh * dv)), [back])
        if j == 0:  # residual: attention + token-wise Dense (with bias) into one population
            fc = g.add("fcr", _dense(rng, hh * dv, hh * dk, exp=-3, bias=True), ["xq"])
            cur = g.add("res", ops.Add(), [cur, fc])
        lif = g.add(f"l{j}", _lif(rng, int(rng.integers(10, 60)), du=int(rng.integers(0, 4097))), [cur])
        g.add(f"o{j}", ops.Output(index=j), [lif])
        g.add(f"oi{j}", ops.Output(index=4 + j), [(lif, "i")])  # the delivered current, exactly
        configs.append((score, order, a_int, a_frac, mult))
    g.profile = target.profile

    def inputs(r: np.random.Generator, batch: int = 3) -> list[np.ndarray]:
        return [r.random((batch, n_tok, hh * dk)).astype("f4"), r.random((batch, m_tok, hh * dk)).astype("f4"),
                r.random((batch, m_tok, hh * dv)).astype("f4")]

    info = dict(N=n_tok, M=m_tok, heads=heads, dk=dk, dv=dv, lanes=lanes, configs=configs)
    return g.verify(), target, inputs, info


@pytest.mark.parametrize("seed", [5, 10, 13, 37])
def test_coincidence_attention_bit_exact(seed, tmp_path):
    g, target, inputs, info = coincidence_graph(seed)
    art = tmp_path / "rtl"
    emit(g, art, target)
    assert lint(art) == [] and lint(art, probe=True) == []
    rng = np.random.default_rng(100 + seed)
    lifs = [n.name for n in g if isinstance(n.op, ops.LIF)]
    res = _check(g, art, [inputs(rng), inputs(rng)], lifs)
    ref = res["ref"]
    for j in range(4):
        assert np.abs(ref.probes[f"l{j}"]["i"]).max() > 0, f"attention {j} delivered no current ({info})"


# -- stochastic attention --------------------------------------------------------------------------


def stochastic_graph(seed: int):
    """Two StochasticAttention units; the second reads the first's output spikes as its values
    when the token counts allow it (otherwise a neuron population)."""
    rng = np.random.default_rng(seed)
    target = load_target(f"fpga:lanes={int(rng.integers(1, 4))}")
    n_tok, m_tok = int(rng.integers(1, 6)), int(rng.integers(2, 6))
    heads = [int(rng.integers(1, 3))] if rng.random() < 0.7 else []
    hh = int(np.prod(heads)) if heads else 1
    dk, dv = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    g = Graph(f"stochastic{seed}", num_steps=int(rng.integers(4, 8)))
    _qkv_inputs(g, n_tok, m_tok, hh * dk, hh * dv)
    g.add("fv", _dense(rng, hh * dv, hh * dv), ["xv"])
    g.add("lv", _lif(rng, 25), ["fv"])
    units = []
    for j in range(2):
        bits = int(rng.choice([3, 8, 12, 16, 32])) if j == 0 else int(rng.integers(5, 20))
        top = (1 << bits) - 1
        op = ops.StochasticAttention(bits=bits, seed=int(rng.integers(1, top + 1)), seed2=int(rng.integers(1, top + 1)),
                                     norm_qk=int(rng.choice([0, 1, 2, dk + 1])), norm_av=int(rng.choice([0, 1, m_tok + 2])))
        v_src = "xv" if j == 0 else ("mg0" if n_tok == m_tok else "lv")
        sc = g.add(f"sc{j}", op, [_heads(g, "xq", n_tok, heads, dk, f"q{j}"), _heads(g, "xk", m_tok, heads, dk, f"k{j}"),
                                  _heads(g, v_src, m_tok, heads, dv, f"v{j}")])
        nd = len(heads) + 2
        back = g.add(f"back{j}", ops.Permute((nd - 2, *range(nd - 2), nd - 1)), [sc])
        g.add(f"mg{j}", ops.Reshape((n_tok, hh * dv)), [back])
        fc = g.add(f"proj{j}", _dense(rng, 3, hh * dv, exp=-1), [f"mg{j}"])  # token-wise Dense
        lif = g.add(f"l{j}", _lif(rng, 50), [fc])
        g.add(f"o{j}", ops.Output(index=2 * j), [lif])
        g.add(f"os{j}", ops.Output(index=2 * j + 1), [sc])
        units.append((bits, op.norm_qk, op.norm_av, v_src))
    g.profile = target.profile

    def inputs(r: np.random.Generator, batch: int = 3) -> list[np.ndarray]:
        return [r.random((batch, n_tok, hh * dk)).astype("f4"), r.random((batch, m_tok, hh * dk)).astype("f4"),
                r.random((batch, m_tok, hh * dv)).astype("f4")]

    return g.verify(), target, inputs, units


@pytest.mark.parametrize("seed", [1, 9, 13])
def test_stochastic_attention_bit_exact(seed, tmp_path):
    g, target, inputs, units = stochastic_graph(seed)
    art = tmp_path / "rtl"
    emit(g, art, target)
    assert lint(art, probe=True) == []
    rng = np.random.default_rng(200 + seed)
    nodes = [n.name for n in g if isinstance(n.op, (ops.LIF, ops.StochasticAttention))]
    res = _check(g, art, [inputs(rng), inputs(rng)], nodes)
    for j in range(2):
        rate = res["ref"].probes[f"sc{j}"]["out"].mean()
        assert 0 < rate < 1, f"stochastic attention sc{j} {units[j]} should be partly active, got rate {rate}"


# -- linear attention ---------------------------------------------------------------------------------


def linear_graph(seed: int, spec: str, scalar: bool = False):
    """Two LinearAttention units (per-channel and per-element decays, or scalar ones) on graded
    current and binary spike inputs, each read through a token-wise Dense into neurons."""
    rng = np.random.default_rng(seed)
    target = load_target(spec)
    heads = int(rng.integers(1, 3))
    dk, dv = int(rng.integers(2, 6)), int(rng.integers(2, 5))
    steps = 8
    g = Graph(f"linear{seed}", num_steps=steps)
    g.add("q", ops.Input((heads * dk,), Encoding("bernoulli", bits=10, seed=3), layout="B"))
    g.add("k", ops.Input((heads * dk,), Encoding("current"), layout="TB", index=1, q=QInput(2, 4)))
    g.add("v", ops.Input((heads * dv,), Encoding("bernoulli", bits=10, seed=11), layout="B", index=2))
    g.add("fk", _dense(rng, heads * dk, heads * dk, exp=-1), ["k"])
    g.add("lk", _lif(rng, 20), ["fk"])
    g.add("qh", ops.Reshape((heads, dk)), ["q"])
    g.add("vh", ops.Reshape((heads, dv)), ["v"])
    decays = [np.array(int(rng.integers(0, 600))), np.array(int(rng.integers(0, 600)))] if scalar else \
        [rng.integers(0, 4096, dv), rng.integers(0, 2500, (heads, dv, dk))]
    b_lo, b_hi = (12, 24) if target.profile.v_bits < 12 else (1, 5)  # narrow states: drive them into overflow
    for j, k_src in enumerate(["k", "lk"]):  # graded (signed currents) and binary keys
        kh = g.add(f"kh{j}", ops.Reshape((heads, dk)), [k_src])
        op = ops.LinearAttention(a=1.0, b=1.0, q=QLinearAttention(decays[j], int(rng.integers(b_lo, b_hi)) * (1 - 2 * j),
                                                               int(rng.integers(1, 9)), int(rng.integers(0, 4))))
        la = g.add(f"la{j}", op, ["qh", kh, "vh"])
        fc = g.add(f"fc{j}", _dense(rng, 3, dv, exp=-3), [la])  # token-wise Dense over (heads, dv)
        lif = g.add(f"l{j}", _lif(rng, 40), [fc])
        g.add(f"o{j}", ops.Output(index=2 * j), [lif])
        g.add(f"ol{j}", ops.Output(index=2 * j + 1), [la])
    g.profile = target.profile

    def inputs(r: np.random.Generator, batch: int = 3) -> list[np.ndarray]:
        return [r.random((batch, heads * dk)).astype("f4"), r.uniform(-2, 2, (steps, batch, heads * dk)).astype("f4"),
                r.random((batch, heads * dv)).astype("f4")]

    return g.verify(), target, inputs


@pytest.mark.parametrize("spec, scalar", [
    ("fpga:lanes=2", False),
    ("fpga:lanes=3,v_bits=8,v_overflow=wrap,decay_rounding=trunc0", False),
    ("fpga:lanes=1,v_bits=9,v_overflow=saturate_sym,decay_rounding=round_half_up", True),
])
def test_linear_attention_bit_exact(spec, scalar, tmp_path):
    g, target, inputs = linear_graph(7, spec, scalar)
    art = tmp_path / "rtl"
    emit(g, art, target)
    assert lint(art, probe=True) == []
    rng = np.random.default_rng(300)
    nodes = [n.name for n in g if isinstance(n.op, (ops.LIF, ops.LinearAttention))]
    res = _check(g, art, [inputs(rng), inputs(rng)], nodes)
    for j in range(2):
        assert np.any(res["ref"].probes[f"la{j}"]["out"] != 0), f"linear attention la{j} stayed silent"
    if target.profile.v_bits < 12:  # the state's overflow rule was exercised
        assert any(res["ref"].stats.get(f"la{j}", {}).get("state_overflow", 0) for j in range(2)), res["ref"].stats


# -- whole blocks through the compiler ------------------------------------------------------------------


def spikformer_block(score: str, order: str, seed: int = 25, stochastic: bool = False):
    """Tokens x features -> Q, K, V spiking projections (Dense on the last axis) -> heads by
    Reshape/Permute -> attention -> back -> LIF -> projection -> LIF (as tests/test_attention_ir.py)."""
    rng = np.random.default_rng(seed)
    n, d, steps, heads = 6, 8, 4, 2
    g = Graph("sc_block" if stochastic else f"spikformer_{score}", num_steps=steps)
    g.add("x", ops.Input((n, d), Encoding("bernoulli", bits=12, seed=5)))
    add_qkv_heads(g, rng, n, d, heads)
    if stochastic:
        g.add("attn", ops.StochasticAttention(bits=12, seed=77, seed2=1234), ["q_p", "k_p", "v_p"])
    else:
        g.add("attn", ops.SpikeAttention(score=score, scale=0.125, order=order), ["q_p", "k_p", "v_p"])
    g.add("back", ops.Permute((1, 0, 2)), ["attn"])
    g.add("merge", ops.Reshape((n, d)), ["back"])
    if stochastic:
        g.add("mix", ops.Dense(rng.normal(0, 0.8, (d, d)).astype("f4")), ["merge"])
        g.add("attn_lif", ops.LIF(alpha=0.5, threshold=0.5, reset="value"), ["mix"])
    else:
        g.add("attn_lif", ops.LIF(alpha=0.5, threshold=0.25, reset="value"), ["merge"])
    g.add("proj", ops.Dense(rng.normal(0, 0.5, (4, d)).astype("f4")), ["attn_lif"])
    g.add("out_lif", ops.LIF(alpha=0.9, threshold=1.0, reset="value"), ["proj"])
    g.add("o", ops.Output("sum", "B"), ["out_lif"])
    return g.verify(), rng.random((16, n, d)).astype("f4")


@pytest.mark.parametrize("score, order, stochastic", [("and", "qk_v", False), ("xnor", "q_kv", False),
                                                      ("and", "qk_v", True)])
def test_attention_block_through_compiler(score, order, stochastic, tmp_path):
    """npuc.compile (legalize, quantize, emit) then npuc.verify against the integer engine:
    every layer's spikes and membranes and the output, plus the attention population."""
    from npuc.builddir import BuildDir
    from npuc.verify import verify

    g, x = spikformer_block(score, order, stochastic=stochastic)
    hw = npuc.compile(g, x, target="fpga:lanes=2", out=tmp_path / "build")
    q = hw.quantized()
    assert isinstance(q["attn"].op, ops.StochasticAttention if stochastic else ops.SpikeAttention)
    result, _, got = verify(BuildDir(hw.path), "rtl", [x[:6]])
    assert result.ok and result.mismatches == 0, result.format()
    assert {"attn_lif.spikes", "out_lif.spikes", "o.out"} <= set(result.compared)
    ref = simulate(q, x[:6], "int", probe=True)
    assert ref.probes["attn_lif"]["spikes"].mean() > 0.02, "the attention layer should spike"
    if stochastic:  # the attention population itself (npuc.verify compares neurons and outputs)
        cmp = compare({"attn": ref.probes["attn"]}, got.probes, engine="rtl")
        assert cmp.ok and cmp.mismatches == 0, cmp.format()
        assert 0 < ref.probes["attn"]["out"].mean() < 1


@pytest.mark.parametrize("model", ["spikingjelly_qk_v", "npuc_nn_stochastic"])
def test_user_spikformer_models_in_rtl(model, tmp_path):
    """Spikformer models written the way users write them (tests/models/spikformer_models.py:
    SpikingJelly neurons, nn.Linear per token, plain matmuls; npuc.nn stochastic attention),
    traced, quantized and emitted by npuc.compile, verified layer by layer in Verilator."""
    import torch
    from models.spikformer_models import NnSpikformer, Spikformer
    from sklearn.datasets import load_digits

    digits = load_digits().data.reshape(-1, 8, 8).astype("f4") / 16
    torch.manual_seed(0)
    if model == "spikingjelly_qk_v":
        m = Spikformer(form="qk_v").eval()
    else:
        m = NnSpikformer("sc").eval()
        m.attn.rng = "lfsr"  # the hardware draws from LFSR streams
    hw = npuc.compile(m, digits[:32], target="fpga:lanes=4", out=tmp_path / "build")
    attn = [n for n in hw.quantized() if isinstance(n.op, (ops.SpikeAttention, ops.StochasticAttention))]
    assert len(attn) == 1
    result = hw.verify(digits[:4], "rtl")
    assert result.ok and result.mismatches == 0, result.format()


# -- stochastic-computing statistics in RTL ----------------------------------------------------------------


def test_sc_streams_statistics_in_rtl():
    """npuc_sc_stats in Verilator: counts equal the exact LFSR model; independent streams give the
    product with the binomial variance p(1-p)/T (leap-forward streams); one shared LFSR gives
    min(p1, p2) whatever T; the MUX adds with weights ps, 1 - ps."""
    bits = 20
    params = sc_stats.config(bits)
    mx = (1 << bits) - 1
    rng = np.random.default_rng(17)
    lengths = (64, 256, 1024, 4096)
    rows = []
    for leap in (0, 1):
        for t in lengths:
            for _ in range(64 if t < 4096 else 32):
                p1, p2, ps = (int(rng.uniform(0.1, 0.9) * mx) for _ in range(3))
                rows.append([p1, p2, ps, t, leap])
    rows = np.array(rows, dtype=np.int64)
    counts = sc_stats.measure(rows, params)
    np.testing.assert_array_equal(counts, sc_stats.model(rows, params))  # bit-exact streams
    p1, p2, ps = (rows[:, i] / mx for i in range(3))
    t, leap = rows[:, 3], rows[:, 4]
    prod = p1 * p2
    mux = ps * p1 + (1 - ps) * p2
    err = {name: counts[:, j] / t - want for j, name, want in
           ((2, "ind", prod), (3, "shared", prod), (5, "mux", mux))}
    shared_vs_min = counts[:, 3] / t - np.minimum(p1, p2)
    ratio, rmse = {}, {}
    for mode in (0, 1):
        for length in lengths:
            m = (t == length) & (leap == mode)
            var = prod[m] * (1 - prod[m]) / length
            ratio[mode, length] = float(np.mean(err["ind"][m] ** 2) / np.mean(var))
            rmse[mode, length] = float(np.sqrt(np.mean(err["ind"][m] ** 2)))
            assert np.sqrt(np.mean(err["shared"][m] ** 2)) > 0.08  # shared LFSR: wrong by ~0.1 at every T
            assert np.sqrt(np.mean(shared_vs_min[m] ** 2)) < 1.5 / np.sqrt(length) + 0.01  # ... it is min(p1, p2)
    pooled = float(np.mean([ratio[1, n] for n in lengths]))
    assert 0.6 < pooled < 1.4, ratio  # leap-forward independent streams: the binomial variance
    assert all(0.3 < ratio[1, n] < 2.2 for n in lengths), ratio
    slope = np.polyfit(np.log(lengths), np.log([rmse[1, n] for n in lengths]), 1)[0]
    assert -0.65 < slope < -0.35, slope  # error ~ T^(-1/2)
    assert rmse[1, 4096] * 8 < np.sqrt(np.mean(err["shared"][(t == 4096) & (leap == 1)] ** 2))
    m = leap == 1
    mux_ratio = np.mean(err["mux"][m] ** 2 * t[m]) / np.mean(mux[m] * (1 - mux[m]))
    assert 0.5 < mux_ratio < 1.6, mux_ratio
    print("independent AND: MSE / (p(1-p)/T) single-step", {n: round(ratio[0, n], 2) for n in lengths},
          "leap-forward", {n: round(ratio[1, n], 2) for n in lengths}, "rmse", rmse, "slope", round(slope, 3))


# -- synthesis -------------------------------------------------------------------------------------------


def all_units_graph():
    """One small design with a coincidence-attention path, a stochastic and a linear unit (the
    neurons are non-leaky integrators, so their decay multipliers vanish and the units dominate)."""
    rng = np.random.default_rng(3)
    target = load_target("fpga:lanes=2")
    n, heads, d = 6, 2, 4
    g = Graph("attention_units", num_steps=8)
    g.add("x", ops.Input((n, heads * d), Encoding("bernoulli", bits=10, seed=3), layout="B"))
    g.add("fc", _dense(rng, heads * d, heads * d), ["x"])
    g.add("l", _lif(rng, 30, dv=0), ["fc"])
    hx = _heads(g, "x", n, [heads], d, "hx")
    hl = _heads(g, "l", n, [heads], d, "hl")
    att = g.add("att", ops.SpikeAttention(score="xnor", q=QAttention(a_int=1, a_frac=0, mult=3, shift=1)), [hl, hx, hx])
    g.add("la_att", _lif(rng, 40, dv=0), [g.add("back", ops.Reshape((heads * n * d,)), [att])])
    sc = g.add("sc", ops.StochasticAttention(bits=16, seed=7, seed2=99), [hl, hx, hl])
    g.add("fsc", _dense(rng, 4, d), [sc])
    g.add("l_sc", _lif(rng, 30, dv=0), ["fsc"])
    lin = g.add("lin", ops.LinearAttention(a=1.0, b=1.0, q=QLinearAttention(np.array([100, 900] * (d // 2)), 2, 3, 1)),
                [hl, hx, hl])
    g.add("flin", _dense(rng, 4, d, exp=-4), [lin])
    g.add("l_lin", _lif(rng, 30, dv=0), ["flin"])
    for i, node in enumerate(("la_att", "l_sc", "l_lin")):
        g.add(f"o{i}", ops.Output(index=i), [node])
    g.profile = target.profile
    return g.verify(), target


@pytest.mark.yosys
def test_attention_units_synthesize(tmp_path):
    """Yosys (synth_ice40) maps every attention unit; resources per stage are reported."""
    g, target = all_units_graph()
    art = tmp_path / "rtl"
    emit(g, art, target)
    assert lint(art) == []
    rep = rtl_report(g, art, yosys=True, target="ice40")
    res = {lay["node"]: lay["resources"] for lay in rep["layers"]}
    for node in ("la_att", "sc", "lin"):
        assert res[node]["LUT"] > 0 and res[node]["FF"] > 0, (node, res[node])
    assert rep["total"]["resources"]["BRAM"] > 0  # the row, accumulator and state memories map to block RAM
    print({k: {r: v[r] for r in ("LUT", "FF", "BRAM", "CARRY")} for k, v in res.items()}, rep["total"]["resources"])
