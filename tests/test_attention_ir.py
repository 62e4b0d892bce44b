"""Inter-token NPEs: coincidence, stochastic and linear attention in both golden engines."""

import numpy as np
import pytest
import torch
from builders import add_qkv_heads
from reference import lfsr_states, popcount_scores

from npuc.ir import Encoding, Graph, QAttention, QInput, QLinearAttention, ops
from npuc.passes.base import PassContext, PassError, run_pipeline
from npuc.pipeline import build_passes
from npuc.sim import simulate
from npuc.sim.lfsr import primitive_taps
from npuc.targets import load_target

RNG = np.random.default_rng(21)


def qkv_graph(op, shape_q, shape_k, shape_v, steps, profile=None):
    g = Graph("attn", num_steps=steps)
    for i, (n, s) in enumerate((("q", shape_q), ("k", shape_k), ("v", shape_v))):
        g.add(n, ops.Input(s, Encoding("spikes"), layout="TB", index=i, q=QInput(0, 8) if profile else None))
    g.add("a", op, ["q", "k", "v"])
    g.add("o", ops.Output(), ["a"])
    g.profile = profile
    return g.verify()


def spikes(*shape, p=0.4):
    return (RNG.random(shape) < p).astype(np.float32)


@pytest.mark.parametrize("score, a", [("and", 0.0), ("xnor", 1.0), ("axnor", 0.25)])
@pytest.mark.parametrize("order", ["qk_v", "q_kv"])
def test_coincidence_attention_float(score, a, order):
    T, B, H, N, D = 3, 2, 2, 5, 8
    q, k, v = spikes(T, B, H, N, D), spikes(T, B, H, N, D), spikes(T, B, H, N, D)
    op = ops.SpikeAttention(score=score, a=a, scale=0.125, order=order)
    got = simulate(qkv_graph(op, (H, N, D), (H, N, D), (H, N, D), T), [q, k, v]).output
    want = np.zeros_like(got)
    for t in range(T):
        for b in range(B):
            for h in range(H):
                want[t, b, h] = popcount_scores(q[t, b, h], k[t, b, h], a) @ v[t, b, h] * 0.125
    assert np.array_equal(got, want)
    if score == "and":  # Spikformer's plain PyTorch expression, bit for bit
        qt, kt, vt = map(torch.from_numpy, (q, k, v))
        assert np.array_equal(got, (qt @ kt.transpose(-2, -1) @ vt * 0.125).numpy())


def test_coincidence_attention_int():
    T, B, N, D = 2, 3, 4, 6
    q, k, v = spikes(T, B, N, D), spikes(T, B, N, D), spikes(T, B, N, D)
    op = ops.SpikeAttention(score="axnor", a=0.75, q=QAttention(a_int=3, a_frac=2, mult=5, shift=3))
    got = simulate(qkv_graph(op, (N, D), (N, D), (N, D), T, load_target("fpga").profile), [q, k, v], "int").output
    for t in range(T):
        for b in range(B):
            s_int = (popcount_scores(q[t, b], k[t, b], 0) * 4 + 3 * (popcount_scores(q[t, b], k[t, b], 1) - popcount_scores(q[t, b], k[t, b], 0))).astype(np.int64)
            want = ((s_int @ v[t, b].astype(np.int64)) * 5) >> 3
            assert np.array_equal(got[t, b], want)


def test_stochastic_attention_matches_scalar_definition_in_both_engines():
    T, B, N, D, bits = 4, 2, 3, 5, 10
    q, k, v = spikes(T, B, N, D, p=0.6), spikes(T, B, N, D, p=0.6), spikes(T, B, N, D, p=0.6)
    op = ops.StochasticAttention(bits=bits, seed=9, seed2=33)
    g = qkv_graph(op, (N, D), (N, D), (N, D), T)
    f = simulate(g, [q, k, v]).output
    g.profile = load_target("fpga").profile
    i = simulate(g, [q, k, v], "int").output
    assert np.array_equal(f, i)
    M = 2**bits - 1
    r1 = np.array(lfsr_states(bits, primitive_taps(bits, 0), 9, T * N * N)).reshape(T, N, N)
    r2 = np.array(lfsr_states(bits, primitive_taps(bits, 1), 33, T * N * D)).reshape(T, N, D)
    for t in range(T):
        for b in range(B):
            c1 = popcount_scores(q[t, b], k[t, b], 0)
            a = (r1[t] <= np.minimum(np.floor(c1 * M / D + 0.5), M)).astype(np.int64)
            c2 = a @ v[t, b].astype(np.int64)
            o = r2[t] <= np.minimum(np.floor(c2 * M / N + 0.5), M)
            assert np.array_equal(i[t, b], o.astype(np.int64))
    assert 0 < f.mean() < 1


def test_stochastic_product_estimates_converge():
    """Mean of the AND-stream attention approximates clip(Q K^T / D) as T grows."""
    T, N, D = 400, 2, 4
    p = RNG.random((N, D))
    q = (RNG.random((T, 1, N, D)) < p).astype(np.float32)
    k = (RNG.random((T, 1, N, D)) < p).astype(np.float32)
    v = np.ones((T, 1, N, D), np.float32)  # O = Bern(sum_j A_ij / N): mean = mean_j A_ij
    g = qkv_graph(ops.StochasticAttention(bits=16, seed=3, seed2=77), (N, D), (N, D), (N, D), T)
    out = simulate(g, [q, k, v]).output.mean(0)[0, :, 0]
    want = np.clip((p @ p.T) / D, 0, 1).mean(1)
    assert np.all(np.abs(out - want) < 0.08), (out, want)


def test_linear_attention_float_and_int():
    T, B, Dk, Dv = 6, 2, 4, 3
    q, k, v = spikes(T, B, Dk), spikes(T, B, Dk), spikes(T, B, Dv)
    # a = b = 1: causal linear attention y_t = sum_{s<=t} v_s (k_s . q_t)
    g = qkv_graph(ops.LinearAttention(a=1.0, b=1.0), (Dk,), (Dk,), (Dv,), T)
    got = simulate(g, [q, k, v]).output
    want = np.stack([sum(v[s] * (k[s] * q[t]).sum(-1, keepdims=True) for s in range(t + 1)) for t in range(T)])
    assert np.array_equal(got, want)
    # per-channel decay in the integer engine, against Python integers
    prof = load_target("fpga").profile
    op = ops.LinearAttention(a=np.array([1.0, 0.5, 0.25], np.float32), b=1.0,
                             q=QLinearAttention(np.array([0, 2048, 3072]), 8, 3, 2))
    g = qkv_graph(op, (Dk,), (Dk,), (Dv,), T, prof)
    got = simulate(g, [q, k, v], "int").output
    S = np.zeros((B, Dv, Dk), dtype=object)
    for t in range(T):
        for b in range(B):
            for c, da in enumerate([0, 2048, 3072]):
                for d in range(Dk):
                    S[b, c, d] = ((S[b, c, d] * (4096 - da)) >> 12) + 8 * int(v[t, b, c]) * int(k[t, b, d])
            want = [((sum(S[b, c, d] * int(q[t, b, d]) for d in range(Dk))) * 3) >> 2 for c in range(Dv)]
            assert got[t, b].tolist() == want


def spikformer_block(score="and", heads=2):
    """Tokens x features -> Q, K, V spiking projections -> coincidence attention -> LIF -> projection."""
    N, D, T = 6, 8, 4
    g = Graph("spikformer", num_steps=T)
    g.add("x", ops.Input((N, D), Encoding("bernoulli", bits=12, seed=5)))
    add_qkv_heads(g, RNG, N, D, heads)
    g.add("attn", ops.SpikeAttention(score=score, scale=0.125), ["q_p", "k_p", "v_p"])
    g.add("back", ops.Permute((1, 0, 2)), ["attn"])
    g.add("merge", ops.Reshape((N, D)), ["back"])
    g.add("attn_lif", ops.LIF(alpha=0.5, threshold=0.25, reset="value"), ["merge"])
    g.add("proj", ops.Dense(RNG.normal(0, 0.5, (4, D)).astype("f4")), ["attn_lif"])
    g.add("out_lif", ops.LIF(alpha=0.9, threshold=1.0, reset="value"), ["proj"])
    g.add("o", ops.Output("sum", "B"), ["out_lif"])
    return g.verify(), RNG.random((16, N, D)).astype("f4")


@pytest.mark.parametrize("score", ["and", "xnor"])
def test_spikformer_block_quantizes_for_fpga(score):
    g, x = spikformer_block(score)
    t = load_target("fpga")
    ctx = PassContext(target=t, calibration=[x], reference=g)
    q = run_pipeline(g, build_passes("fpga"), ctx)
    assert q["attn"].op.q is not None
    agree = ctx.log[-1]["spike_agreement"]
    assert agree["attn_lif"] > 0.95 and agree["out_lif"] > 0.9, agree
    assert simulate(g, x, probe=["attn_lif"]).probes["attn_lif"]["spikes"].mean() > 0.02


def test_attention_has_no_stock_loihi_mapping():
    """lava-nc has no attention process: stock_only refuses it (without it npuc emits NpucAttention,
    tests/test_lava_attention.py)."""
    g, x = spikformer_block()
    with pytest.raises(PassError, match="'attn' \\(SpikeAttention\\) has no Loihi 2 process"):
        run_pipeline(g, build_passes("loihi2", ["legalize"]),
                     PassContext(target=load_target("loihi2:stock_only=1"), calibration=[x]))
