"""Float engine against PyTorch's own modules and an independent per-step LIF loop."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import lif_float

from npuc.ir import Encoding, Graph, ops
from npuc.sim import simulate

HYP = settings(max_examples=25, deadline=None)


def run_single(op, x_tb, in_shape, steps, port=None, meta=None):
    """Simulate one op between an Input (per-step currents, TB layout) and an Output."""
    g = Graph("one", num_steps=steps)
    g.add("x", ops.Input(in_shape, layout="TB"))
    g.add("n", op, ["x"], meta=meta)
    g.add("o", ops.Output(), [("n", port)])
    return simulate(g.verify(), x_tb).output


@HYP
@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 40), st.integers(1, 20), st.booleans(), st.booleans())
def test_dense_matches_nn_linear_per_step(T, B, fin, fout, bias, spikes):
    rng = np.random.default_rng(fin * 100 + fout)
    lin = torch.nn.Linear(fin, fout, bias=bias)
    x = torch.from_numpy((rng.random((T, B, fin)) < 0.4).astype(np.float32) if spikes else rng.normal(size=(T, B, fin)).astype(np.float32))
    with torch.no_grad():
        want = torch.stack([lin(x[t]) for t in range(T)])  # how a time-loop model calls it
    op = ops.Dense(lin.weight.detach().numpy(), lin.bias.detach().numpy() if bias else None)
    assert np.array_equal(run_single(op, x.numpy(), (fin,), T), want.numpy())


def test_time_folded_dense_matches_folded_call():
    rng = np.random.default_rng(0)
    lin = torch.nn.Linear(300, 20)
    x = torch.from_numpy(rng.normal(size=(6, 1, 300)).astype(np.float32))
    with torch.no_grad():
        folded = lin(x)  # SpikingJelly multi-step style: one call on [T, B, F]
    got = run_single(ops.Dense(lin.weight.detach().numpy(), lin.bias.detach().numpy()), x.numpy(), (300,), 6, meta={"time_folded": True})
    assert np.array_equal(got, folded.numpy())


@HYP
@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2]),
    st.integers(0, 1), st.integers(1, 2), st.integers(4, 9),
)
def test_conv2d_matches_nn_conv2d(B, cg, k, stride, pad, dil, hw):
    groups = 2
    conv = torch.nn.Conv2d(cg * groups, 2 * groups, k, stride=stride, padding=pad, dilation=dil, groups=groups)
    T = 3
    x = torch.rand(T, B, cg * groups, hw, hw)
    if (hw + 2 * pad - dil * (k - 1) - 1) // stride + 1 < 1:
        return
    with torch.no_grad():
        want = torch.stack([conv(x[t]) for t in range(T)])
    op = ops.Conv2d(conv.weight.detach().numpy(), conv.bias.detach().numpy(), stride, pad, dil, groups)
    assert np.array_equal(run_single(op, x.numpy(), (cg * groups, hw, hw), T), want.numpy())


def test_conv1d_depthwise():
    conv = torch.nn.Conv1d(4, 4, 3, padding=1, groups=4)
    x = torch.rand(2, 3, 4, 10)
    with torch.no_grad():
        want = torch.stack([conv(x[t]) for t in range(2)])
    op = ops.Conv1d(conv.weight.detach().numpy(), conv.bias.detach().numpy(), padding=1, groups=4)
    assert np.array_equal(run_single(op, x.numpy(), (4, 10), 2), want.numpy())


@pytest.mark.parametrize("kernel, stride, pad", [(2, None, 0), (3, 1, 1), ((2, 3), (1, 2), 0)])
def test_pools(kernel, stride, pad):
    x = (torch.rand(2, 3, 2, 7, 7) < 0.5).float() * torch.randint(1, 4, (2, 3, 2, 7, 7)).float()
    xs = x.numpy()
    s = stride if stride is not None else kernel
    mp = torch.nn.MaxPool2d(kernel, s, pad)
    ap = torch.nn.AvgPool2d(kernel, s, pad)
    with torch.no_grad():
        want_max = torch.stack([mp(x[t]) for t in range(2)]).numpy()
        want_avg = torch.stack([ap(x[t]) for t in range(2)]).numpy()
    assert np.array_equal(run_single(ops.MaxPool2d(kernel, stride, pad), xs, (2, 7, 7), 2), want_max)
    assert np.array_equal(run_single(ops.AvgPool2d(kernel, stride, pad), xs, (2, 7, 7), 2), want_avg)
    # sum pool: integer-valued inputs sum exactly; compare with an explicit window loop
    got = run_single(ops.SumPool2d(kernel, stride, pad), xs, (2, 7, 7), 2)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (s, s) if isinstance(s, int) else s
    ph = pw = pad
    padded = np.pad(xs, ((0, 0),) * 3 + ((ph, ph), (pw, pw)))
    H = (7 + 2 * ph - kh) // sh + 1
    W = (7 + 2 * pw - kw) // sw + 1
    want = np.zeros(xs.shape[:3] + (H, W), np.float32)
    for i in range(H):
        for j in range(W):
            want[..., i, j] = padded[..., i * sh:i * sh + kh, j * sw:j * sw + kw].sum((-1, -2))
    assert np.array_equal(got, want)


def test_batchnorm_scale_add_shape_ops():
    bn = torch.nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 4, 3, 5, 5)
    g = Graph("m", num_steps=2)
    g.add("x", ops.Input((3, 5, 5), layout="TB"))
    g.add("bn", ops.BatchNorm(bn.running_mean.numpy(), bn.running_var.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(), bn.eps), ["x"])
    g.add("sc", ops.Scale(np.array([0.5, 2.0, -1.0], np.float32).reshape(3, 1, 1)), ["bn"])
    g.add("add", ops.Add(), ["sc", "x"])
    g.add("p", ops.Permute((1, 2, 0)), ["add"])
    g.add("r", ops.Reshape((5, -1)), ["p"])
    g.add("o", ops.Output(), ["r"])
    with torch.no_grad():
        want = torch.stack([((bn(x[t]) * torch.tensor([0.5, 2.0, -1.0]).reshape(3, 1, 1)) + x[t]).permute(0, 2, 3, 1).reshape(4, 5, -1) for t in range(2)])
    assert np.array_equal(simulate(g.verify(), x.numpy()).output, want.numpy())


lif_options = st.fixed_dictionaries(
    {
        "reset": st.sampled_from(["subtract", "value", "none"]),
        "reset_timing": st.sampled_from(["same", "delayed", "delayed_charge"]),
        "compare": st.sampled_from(["gt", "ge"]),
        "spike": st.sampled_from(["binary", "ternary", "multilevel"]),
        "cuba": st.booleans(),
        "per_neuron": st.booleans(),
        "v_min": st.booleans(),
    }
)


def make_lif(o, n, rng):
    def p(lo, hi):
        return np.asarray(rng.uniform(lo, hi, n) if o["per_neuron"] else rng.uniform(lo, hi), dtype=np.float32)

    kw = dict(alpha=p(0.3, 1.0), threshold=p(0.5, 1.5), gain=p(0.5, 1.5), bias=p(-0.2, 0.2),
              reset=o["reset"], reset_timing=o["reset_timing"], reset_value=float(rng.uniform(-0.5, 0.5)),
              compare=o["compare"], spike=o["spike"], v_init=float(rng.uniform(-0.2, 0.2)))
    if o["cuba"]:
        kw["alpha_i"] = p(0.2, 0.9)
    if o["spike"] == "ternary":
        kw["threshold_lo"] = -p(0.5, 1.5)
    if o["spike"] == "multilevel":
        kw["compare"] = "ge"
        kw["levels"] = int(rng.integers(2, 6)) if rng.random() < 0.5 else None
    if o["v_min"]:
        kw["v_min"] = p(-2.0, -0.5)
    return ops.LIF(**kw)


@HYP
@given(lif_options, st.integers(0, 10_000))
def test_lif_matches_reference_loop(o, seed):
    rng = np.random.default_rng(seed)
    n, T, B = 7, 12, 3
    op = make_lif(o, n, rng)
    x = rng.normal(0.4, 1.0, (T, B, n)).astype(np.float32)
    want = lif_float(op, torch.from_numpy(x))
    for port in ("spikes", "v", "i"):
        got = run_single(op, x, (n,), T, port=port)
        assert np.array_equal(got, want[port].numpy()), port


@HYP
@given(st.sampled_from(["value", "none"]), st.sampled_from(["binary", "ternary", "multilevel"]), st.booleans(),
       st.integers(0, 10_000))
def test_alpha_charge_matches_reference_loop(reset, spike, per_neuron, seed):
    """``charge="previous"`` (snntorch Alpha): v charges with the previous current; a delayed_charge
    value reset also clears the current."""
    rng = np.random.default_rng(seed)
    n, T, B = 7, 12, 3
    o = {"reset": reset, "reset_timing": "delayed_charge", "compare": "gt", "spike": spike, "cuba": True,
         "per_neuron": per_neuron, "v_min": False}
    op = make_lif(o, n, rng).replace(charge="previous")
    x = rng.normal(0.4, 1.0, (T, B, n)).astype(np.float32)
    want = lif_float(op, torch.from_numpy(x))
    for port in ("spikes", "v", "i"):
        got = run_single(op, x, (n,), T, port=port)
        assert np.array_equal(got, want[port].numpy()), port


def test_if_is_lif_without_leak():
    x = np.random.default_rng(1).normal(0.3, 0.5, (10, 2, 4)).astype(np.float32)
    a = run_single(ops.IF(threshold=1.0), x, (4,), 10)
    b = run_single(ops.LIF(alpha=1.0, threshold=1.0), x, (4,), 10)
    assert np.array_equal(a, b) and a.sum() > 0


def test_recurrent_matches_explicit_loop():
    rng = np.random.default_rng(5)
    W = rng.normal(0, 0.6, (4, 3)).astype(np.float32)
    V = rng.normal(0, 0.6, (4, 4)).astype(np.float32)
    g = Graph("rnn", num_steps=9)
    g.add("x", ops.Input((3,)))
    g.add("fc", ops.Dense(W), ["x"])
    g.add("rec", ops.Dense(V), [("lif", "spikes", 1)])
    g.add("sum", ops.Add(), ["fc", "rec"])
    g.add("lif", ops.LIF(alpha=0.8, threshold=0.7), ["sum"])
    g.add("o", ops.Output(), ["lif"])
    x = rng.random((2, 3)).astype(np.float32)
    got = simulate(g.verify(), x).output
    xt, Wt, Vt = map(torch.from_numpy, (x, W, V))
    v = torch.zeros(2, 4)
    s = torch.zeros(2, 4)
    out = []
    for _ in range(9):
        a = torch.nn.functional.linear(xt, Wt) + torch.nn.functional.linear(s, Vt)
        h = 0.8 * v + 1.0 * a + 0.0
        s = (h > 0.7).float()
        v = h - s * 0.7
        out.append(s)
    assert np.array_equal(got, torch.stack(out).numpy())
    assert got.sum() > 0


def test_input_layouts_and_decodings():
    x_bt = np.random.default_rng(2).random((3, 5, 4)).astype(np.float32)  # [B, T, F]
    g = Graph("io")
    g.add("x", ops.Input((4,), layout="BT"))
    g.add("l", ops.LIF(alpha=0.9, threshold=0.8), ["x"])
    for i, (dec, lay) in enumerate([("sequence", "TB"), ("sequence", "BT"), ("sum", "B"), ("mean", "B"), ("last", "B"), ("max", "B")]):
        g.add(f"o{i}", ops.Output(dec, lay, index=i), ["l"])
    g.add("ov", ops.Output("last", "B", index=6), [("l", "v")])
    r = simulate(g.verify(), x_bt, probe=["l"])
    seq = r.probes["l"]["spikes"]  # [T, B, F]
    assert seq.shape == (5, 3, 4)
    want = [seq, seq.transpose(1, 0, 2), seq.sum(0), seq.mean(0), seq[-1], seq.max(0), r.probes["l"]["v"][-1]]
    for got, w in zip(r.outputs, want):
        assert np.array_equal(got, w)


@pytest.mark.parametrize("bits", [8, 12])
def test_spike_encoders_match_definitions(bits):
    T = 10
    rng = np.random.default_rng(bits)
    x = rng.random((3, 6)).astype(np.float32)
    x[0, :3] = [0.0, 1.0, 0.5]
    M = 2**bits - 1
    xq = np.floor(np.clip(x.astype(np.float64), 0, 1) * M + 0.5).astype(np.int64)

    def enc(kind, **kw):
        g = Graph("e", num_steps=T)
        g.add("x", ops.Input((6,), Encoding(kind, bits=bits, **kw)))
        g.add("o", ops.Output(), ["x"])
        return simulate(g, x).output

    # rate: the first k of T steps, k = round(x T) computed exactly on x_q
    rate = enc("rate")
    k = rate.sum(0)
    assert np.all(np.abs(k - xq * T / M) <= 0.5 + 1e-9)
    assert np.all(rate == (np.arange(T)[:, None, None] < k[None]))
    # timecode: the T-bit binary expansion of round(x (2^T - 1)), MSB first
    tc = enc("timecode")
    q = np.floor(np.clip(x.astype(np.float64), 0, 1) * (2**T - 1) + 0.5).astype(np.int64)
    assert np.array_equal((tc * (2 ** np.arange(T - 1, -1, -1))[:, None, None]).sum(0), q)
    # latency: exactly one spike at round((1 - x)(T - 1))
    lat = enc("latency")
    assert np.all(lat.sum(0) == 1)
    want_t = np.floor((M - xq) * (T - 1) / M + 0.5)
    assert np.array_equal(lat.argmax(0), want_t)
    # bernoulli: one scalar LFSR walked element by element, same stream for every sample
    bern = enc("bernoulli", seed=5)
    from npuc.sim.lfsr import primitive_taps

    taps, s, r = primitive_taps(bits), 5, []
    for _ in range(T * 6):
        fb = bin(s & taps).count("1") & 1
        s = ((s << 1) | fb) & M
        r.append(s)
    r = np.array(r).reshape(T, 1, 6)
    assert np.array_equal(bern, (r <= xq[None]).astype(bern.dtype))
    assert bern[:, 0, 0].sum() == 0 and bern[:, 0, 1].sum() == T  # x=0 never, x=1 always
