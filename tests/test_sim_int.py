"""Integer engine against pure-Python integer references and hand-computed cases."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import dense_int, lif_int

from npuc.ir import QLIF, Graph, NumericProfile, QInput, QScale, QSynapse, ops
from npuc.sim import simulate
from npuc.targets import load_target

HYP = settings(max_examples=30, deadline=None)
LOIHI = load_target("loihi2").profile
FPGA = load_target("fpga").profile


def int_graph(op, n, steps, profile, spikes_in=False):
    g = Graph("one", num_steps=steps)
    g.add("x", ops.Input((n,), layout="TB", encoding=_enc("spikes" if spikes_in else "current"), q=QInput(0, 32)))
    g.add("n", op, ["x"])
    g.add("o", ops.Output(), ["n"])
    g.add("ov", ops.Output(index=1), [("n", "v")])
    g.add("oi", ops.Output(index=2), [("n", "i")])
    g.profile = profile
    return g.verify()


def _enc(kind):
    from npuc.ir import Encoding

    return Encoding(kind)


profiles = st.sampled_from(
    [
        LOIHI,
        FPGA,
        dataclasses.replace(FPGA, decay_rounding="trunc0", u_overflow="wrap", v_overflow="wrap", u_bits=10, v_bits=10),
        dataclasses.replace(FPGA, decay_rounding="round_half_up", act_bits=8, act_overflow="saturate", act_shift=2, vth_shift=2, du_offset=1),
        dataclasses.replace(FPGA, arith_bits=15, u_overflow="wrap_sym", v_overflow="saturate_sym"),  # adders narrower than the state
    ]
)


@HYP
@given(
    profiles,
    st.sampled_from(["subtract", "value", "none"]),
    st.sampled_from(["same", "delayed", "delayed_charge"]),
    st.sampled_from(["gt", "ge"]),
    st.sampled_from(["binary", "ternary", "multilevel"]),
    st.booleans(),
    st.integers(0, 100_000),
)
def test_lif_matches_python_ints(prof, reset, timing, compare, spike, vmin, seed):
    rng = np.random.default_rng(seed)
    n, T, B = 5, 14, 2
    D = prof.decay_unity
    big = 2 ** (prof.v_bits - 1)
    q = QLIF(
        du=int(rng.integers(0, D - prof.du_offset + 1)),
        dv=int(rng.integers(0, D // 2)),
        vth=int(rng.integers(1, max(2, (big >> prof.vth_shift) // 4))),
        bias_mant=rng.integers(-50, 50, n),
        bias_exp=int(rng.integers(0, 3)),
        vth_lo=None,
        reset_value=int(rng.integers(-20, 20)),
        v_min=np.array(-big // 3) if vmin else None,
        v_init=int(rng.integers(-10, 10)),
    )
    kw = dict(reset=reset, reset_timing=timing, compare=compare, spike=spike)
    if spike == "ternary":
        q = dataclasses.replace(q, vth_lo=-q.vth)
        kw["threshold_lo"] = -0.5
    if spike == "multilevel":
        kw.update(compare="ge", levels=4)
    _equals_reference(ops.LIF(**kw, q=q), prof, rng, (T, B, n), big)


def _equals_reference(op, prof, rng, shape: tuple[int, int, int], big: int) -> None:
    """The engine's spikes, v and i equal `lif_int`'s on inputs large enough to wrap/saturate
    now and then."""
    scale = (big >> prof.act_shift) // 3
    a = rng.integers(-scale, scale, shape) * (rng.random(shape) < 0.5)
    res = simulate(int_graph(op, shape[2], shape[0], prof), a.astype(np.float64), "int")
    want = lif_int(op, prof, a)
    for got, port in zip(res.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port


@HYP
@given(profiles, st.sampled_from(["value", "none"]), st.integers(0, 100_000))
def test_alpha_charge_matches_python_ints(prof, reset, seed):
    """``charge="previous"`` (snntorch Alpha): h charges with the previous u; the delayed_charge
    value reset also clears u. Inputs large enough to wrap/saturate now and then."""
    rng = np.random.default_rng(seed)
    n, T, B = 5, 16, 2
    D = prof.decay_unity
    big = 2 ** (prof.v_bits - 1)
    q = QLIF(du=int(rng.integers(0, D // 4)), dv=int(rng.integers(0, D // 2)),
             vth=int(rng.integers(1, max(2, (big >> prof.vth_shift) // 4))), bias_mant=rng.integers(-50, 50, n),
             reset_value=int(rng.integers(-20, 20)), v_init=int(rng.integers(-10, 10)))
    _equals_reference(ops.LIF(alpha_i=0.9, charge="previous", reset=reset, reset_timing="delayed_charge", q=q),
                      prof, rng, (T, B, n), big)


def test_lava_lif_hand_computed():
    """Lava's LIF: u wraps at 24 bits (one correction), v saturates at +-(2^23-1), trunc0 decay."""
    op = ops.LIF(reset="value", q=QLIF(du=4095, dv=0, vth=2**17 - 1, bias_mant=np.zeros(1)))
    a = np.array([[[2**17]], [[2**17 - 1]], [[-(2**17)]]], dtype=np.float64)  # a << 6 = 2^23, 2^23 - 64, -2^23
    res = simulate(int_graph(op, 1, 3, LOIHI), a, "int")
    s, v, u = (o[:, 0, 0].tolist() for o in res.outputs)
    assert u == [2**23, 2**23 - 64, 2**23]  # 2^23 stays (wraps only above 2^23); -2^23 wraps to +2^23
    # vth << 6 = 2^23 - 64. Step 0: v saturates to 2^23 - 1 > vth: spike, v = 0. Step 1: v = 2^23 - 64 = vth,
    # no spike (strict >). Step 2: v = (2^23 - 64) + 2^23 saturates: spike, v = 0.
    assert s == [1, 0, 1] and v == [0, 2**23 - 64, 0]
    assert res.stats["n"]["v_overflow"] == 2 and res.stats["n"]["u_overflow"] == 1


@pytest.mark.parametrize("rounding, want", [("trunc0", -2), ("floor", -3), ("round_half_up", -2)])
def test_decay_rounding_of_negative_values(rounding, want):
    prof = dataclasses.replace(FPGA, decay_rounding=rounding)
    op = ops.LIF(reset="none", q=QLIF(du=4096, dv=2048, vth=1000, bias_mant=np.zeros(1), v_init=-5))
    res = simulate(int_graph(op, 1, 1, prof), np.zeros((1, 1, 1)), "int")
    assert res.outputs[1][0, 0, 0] == want  # -5 * 2048 / 4096 = -2.5


def test_dense_conv_pool_int():
    rng = np.random.default_rng(7)
    W = rng.integers(-128, 128, (6, 10))
    b = rng.integers(-100, 100, 6)
    g = Graph("d", num_steps=3)
    g.add("x", ops.Input((10,), layout="TB", encoding=_enc("spikes")))
    g.add("d", ops.Dense(W.astype(np.float32), q=QSynapse(W, -3, b)), ["x"])
    g.add("s", ops.Scale(0.5, q=QScale(np.array(3), 2)), ["d"])
    g.add("o", ops.Output(), ["s"])
    g.profile = FPGA
    x = (rng.random((3, 4, 10)) < 0.5).astype(np.float32)
    got = simulate(g.verify(), x, "int").output
    want = (dense_int(x.astype(np.int64), W, -3, b) * 3) >> 2
    assert np.array_equal(got, want)
    assert (want < 0).any()  # the floor shift on negative sums is exercised

    Wc = rng.integers(-20, 20, (4, 2, 3, 3))
    g = Graph("c", num_steps=2)
    g.add("x", ops.Input((2, 6, 6), layout="TB", encoding=_enc("spikes")))
    g.add("c", ops.Conv2d(Wc.astype(np.float32), padding=1, q=QSynapse(Wc, 1)), ["x"])
    g.add("sp", ops.SumPool2d(2), ["c"])
    g.add("ap", ops.AvgPool2d(3, 1, 1, q=QScale(np.array(57), 9)), ["sp"])
    g.add("mp", ops.MaxPool2d(3, 1), ["ap"])
    g.add("o", ops.Output(), ["mp"])
    g.profile = FPGA
    x = (rng.random((2, 3, 2, 6, 6)) < 0.5).astype(np.float32)
    got = simulate(g.verify(), x, "int").output
    # independent: explicit convolution windows with Python ints
    xi = np.pad(x.astype(np.int64), ((0, 0),) * 3 + ((1, 1), (1, 1)))
    conv = np.zeros((2, 3, 4, 6, 6), np.int64)
    for o in range(4):
        for i in range(6):
            for j in range(6):
                conv[:, :, o, i, j] = (xi[:, :, :, i:i + 3, j:j + 3] * Wc[o]).sum((-1, -2, -3))
    conv <<= 1
    sp = conv.reshape(2, 3, 4, 3, 2, 3, 2).sum((-1, -3))
    spp = np.pad(sp, ((0, 0),) * 3 + ((1, 1), (1, 1)))
    ap = np.zeros_like(sp)
    for i in range(3):
        for j in range(3):
            ap[..., i, j] = (spp[..., i:i + 3, j:j + 3].sum((-1, -2)) * 57) >> 9
    mp = ap.max((-1, -2), keepdims=True)
    assert np.array_equal(got, mp)


def test_exactness_beyond_float64_range():
    """Sums past 2^53 take the exact int64 path."""
    W = np.full((1, 4), 2**40, dtype=np.int64)
    g = Graph("big", num_steps=1)
    g.add("x", ops.Input((4,), layout="TB", encoding=_enc("spikes")))
    g.add("d", ops.Dense(np.ones((1, 4)), q=QSynapse(W, 0)), ["x"])
    g.add("a", ops.Add(), ["d", "d"])
    g.add("o", ops.Output(), ["a"])
    g.profile = FPGA
    x = np.full((1, 1, 4), 2**12 + 1, dtype=np.float64)
    got = simulate(g.verify(), x, "int").output
    assert got[0, 0, 0] == 2 * 4 * (2**40) * (2**12 + 1)


def test_current_input_quantization():
    g = Graph("q", num_steps=2)
    g.add("x", ops.Input((4,), q=QInput(frac_bits=2, bits=6)))
    g.add("o", ops.Output(), ["x"])
    g.profile = FPGA
    x = np.array([[0.125, -0.125, 7.9, -100.0]], np.float32)
    got = simulate(g.verify(), x, "int").output
    assert got[0, 0].tolist() == [1, -1, 31, -32]  # round half away from zero, saturate to 6 bits
    assert got.shape == (2, 1, 4)


def test_int_engine_requires_quantized_graph():
    g = Graph("f", num_steps=2)
    g.add("x", ops.Input((2,)))
    g.add("o", ops.Output(), ["x"])
    with pytest.raises(ValueError, match="no numeric profile"):
        simulate(g, np.zeros((1, 2), np.float32), "int")
    g.profile = NumericProfile("p")
    with pytest.raises(ValueError, match="run the quantize pass"):
        simulate(g, np.zeros((1, 2), np.float32), "int")


def test_batch_chunks_give_the_whole_batch_result(monkeypatch, tmp_path):
    """Large batches run in chunks (samples are independent): outputs, probes and overflow
    counters equal one whole-batch evaluation, for conv, pooling, recurrence and Bernoulli input."""
    import npuc
    import npuc.sim.engine as engine
    from npuc.ir import Encoding, Reshape

    rng = np.random.default_rng(3)
    g = Graph("chunks", num_steps=6)
    g.add("x", ops.Input((2, 6, 6), encoding=Encoding("bernoulli", seed=5)))
    g.add("c", ops.Conv2d(rng.normal(0, 0.6, (4, 2, 3, 3)).astype(np.float32), padding=1), ["x"])
    g.add("l1", ops.LIF(alpha=0.8, threshold=0.5), ["c"])
    g.add("p", ops.SumPool2d(2), ["l1"])
    g.add("f", Reshape((-1,)), ["p"])
    g.add("d", ops.Dense(rng.normal(0, 0.5, (5, 36)).astype(np.float32)), ["f"])
    g.add("r", ops.Dense(rng.normal(0, 0.5, (5, 5)).astype(np.float32)), [("l2", "spikes", 1)])
    g.add("a", ops.Add(), ["d", "r"])
    g.add("l2", ops.LIF(alpha=0.9, threshold=0.6), ["a"])
    g.add("o", ops.Output("sum", "B"), ["l2"])
    x = rng.random((23, 2, 6, 6)).astype(np.float32)
    q = npuc.compile(g.verify(), x, target="fpga:state_bits=10", out=tmp_path / "b").quantized("fpga")

    whole = simulate(q, x, "int", probe=True)
    monkeypatch.setattr(engine, "_CHUNK_ELEMENTS", 6 * 144 * 4)  # 4 samples per chunk
    assert engine._chunk_size(q, 6, 23) == 4
    chunked = simulate(q, x, "int", probe=True)
    assert np.array_equal(whole.output, chunked.output)
    assert whole.output.sum() > 0
    for node, ports in whole.probes.items():
        for port, v in ports.items():
            assert np.array_equal(v, chunked.probes[node][port]), (node, port)
    assert whole.stats == chunked.stats


def test_input_quantization_rounds_half_away_from_zero_exactly():
    """``quantize_current`` (trunc(v +- 0.5)) against the definition sign(v) floor(|v| + 0.5),
    on ties, values next to ties, signed zeros and saturating values; on a large input (torch)
    and on small ones (numpy's path), float32 and float64."""
    from npuc.sim.encoding import quantize_current

    rng = np.random.default_rng(0)
    for f in (-3, 0, 4, 12, 20):
        x = np.concatenate([rng.normal(0, 10, 20000), (np.arange(-50, 50) + 0.5) / 2.0**f,
                            [-0.0, 0.0, 1e30, -1e30, 0.49999997, -0.49999997]]).astype(np.float32)
        xt = torch.from_numpy(x)
        for bits in (8, 16, 32):
            v = x.astype(np.float64) * 2.0**f
            want = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            assert np.array_equal(quantize_current(xt, f, bits).numpy(), want.astype(np.int64)), (f, bits)
            for part in (slice(19000, None), slice(0, 3000)):  # below the numpy path's size limit
                for xs in (xt[part], xt[part].double()):
                    got = quantize_current(xs, f, bits).numpy()
                    assert np.array_equal(got, want[part].astype(np.int64)), (f, bits, xs.dtype)


@pytest.mark.parametrize("wmax", [2**6, 2**30, 2**58], ids=["float32", "float64", "int64"])
@pytest.mark.parametrize("exp", [-3, 0, 2])
def test_dense_exact_at_every_float_tier(wmax, exp):
    """The weighted sum, exponent and bias run in float32, float64 (exact below 2^24 / 2^53) or
    int64 by their bound: each tier equals the Python-int reference, negative floors included."""
    rng = np.random.default_rng(wmax % 1000 + exp)
    W = rng.integers(-wmax, wmax, (5, 8))
    b = rng.integers(-wmax // 4, wmax // 4, 5)
    g = Graph("d", num_steps=2)
    g.add("x", ops.Input((8,), layout="TB", encoding=_enc("spikes")))
    g.add("d", ops.Dense(W.astype(np.float32), q=QSynapse(W, exp if wmax < 2**58 else min(exp, 0), b)), ["x"])
    g.add("o", ops.Output(), ["d"])
    g.profile = FPGA
    x = rng.integers(0, 4, (2, 3, 8)).astype(np.float32)  # graded spike counts
    got = simulate(g.verify(), x, "int").output
    want = dense_int(x.astype(np.int64), W, g["d"].op.q.weight_exp, b)
    assert np.array_equal(got, want) and (want < 0).any()
