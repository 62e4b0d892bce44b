"""Spiking attention from PyTorch: the npuc.nn attention modules and the plain-PyTorch
Spikformer pattern trace to the IR's inter-token NPEs, and the float engine reproduces
the model bit for bit; attention-like code outside the supported forms fails naming
the source line. A SpikingJelly Spikformer trained on digits compiles through the CLI
for ``--target fpga`` and keeps its accuracy in the integer engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from models import spikformer_models as M
from models.harness import assert_exact
from reference import lfsr_states, popcount_attention

import npuc.nn as nnn
from npuc.cli import main
from npuc.frontends import FrontendError, trace
from npuc.ir import LIF, LinearAttention, Scale, SpikeAttention, StochasticAttention
from npuc.passes.base import PassContext, run_pipeline
from npuc.pipeline import build_passes
from npuc.sim import simulate
from npuc.sim.lfsr import primitive_taps
from npuc.targets import load_target

MODELS = Path(__file__).parent / "models" / "spikformer_models.py"
RNG = np.random.default_rng(7)


def spikes(*shape, p=0.4):
    return (RNG.random(shape) < p).astype(np.float32)


class Wrap(torch.nn.Module):
    """An attention module between model inputs and a LIF (both outputs returned)."""

    def __init__(self, attn: torch.nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.lif = nnn.LIF(alpha=0.5, threshold=0.3)

    def forward(self, q, k, v):
        y = self.attn(q, k, v)
        return y, self.lif(y)


def _run(model: torch.nn.Module, xs: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], object]:
    graph = trace(model, xs)
    got = simulate(graph, xs if len(xs) > 1 else xs[0]).outputs
    with torch.no_grad():
        ref = [o.numpy() for o in model(*map(torch.from_numpy, xs))]
    return got, ref, graph


# -- npuc.nn modules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("score, a", [("and", 0.0), ("xnor", 1.0), ("axnor", 0.25), ("axnor", 0.3)])
@pytest.mark.parametrize("order", ["qk_v", "q_kv"])
def test_spiking_self_attention_module(score, a, order):
    T, B, H, N, M_, D = 3, 2, 2, 5, 4, 8
    q, k, v = spikes(T, B, H, N, D), spikes(T, B, H, M_, D), spikes(T, B, H, M_, 6)
    mod = nnn.SpikingSelfAttention(score=score, a=a, scale=0.125, order=order)
    got, ref, graph = _run(Wrap(mod), [q, k, v])
    assert_exact(got, ref, f"SpikingSelfAttention({score}, a={a}, {order})")
    (node,) = graph.of_type(SpikeAttention)
    assert (node.op.score, node.op.a, node.op.order) == (score, a, order)
    want = np.zeros_like(ref[0], dtype=np.float64)
    for t in range(T):
        for b in range(B):
            for h in range(H):
                want[t, b, h] = popcount_attention(q[t, b, h], k[t, b, h], v[t, b, h], a, 0.125)
    assert np.allclose(ref[0], want, rtol=1e-6, atol=0)
    if a != 0.3:  # dyadic: every float32 intermediate is exact
        assert np.array_equal(ref[0], want)


def test_stochastic_attention_module_is_the_lfsr_definition():
    T, B, N, D, bits = 4, 2, 3, 5, 10
    q, k, v = spikes(T, B, N, D, p=0.6), spikes(T, B, N, D, p=0.6), spikes(T, B, N, 4, p=0.6)
    mod = nnn.StochasticAttention(bits=bits, seed=9, seed2=33)
    got, ref, graph = _run(Wrap(mod), [q, k, v])
    assert_exact(got, ref, "StochasticAttention")
    (node,) = graph.of_type(StochasticAttention)
    assert (node.op.bits, node.op.seed, node.op.seed2) == (bits, 9, 33)
    m = 2**bits - 1
    r1 = np.array(lfsr_states(bits, primitive_taps(bits, 0), 9, T * N * N)).reshape(T, N, N)
    r2 = np.array(lfsr_states(bits, primitive_taps(bits, 1), 33, T * N * 4)).reshape(T, N, 4)
    for t in range(T):
        for b in range(B):
            c1 = q[t, b].astype(np.int64) @ k[t, b].T.astype(np.int64)
            a = r1[t] <= np.minimum(np.floor(c1 * m / D + 0.5), m)
            c2 = a.astype(np.int64) @ v[t, b].astype(np.int64)
            assert np.array_equal(ref[0][t, b], (r2[t] <= np.minimum(np.floor(c2 * m / N + 0.5), m)).astype(np.float32))
    assert 0.05 < ref[0].mean() < 0.95


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (np.array([0.9, 0.5, 0.25], np.float32), 0.7)])
def test_linear_attention_module(a, b):
    T, B, H, Dk = 6, 2, 2, 4
    q, k = RNG.normal(size=(T, B, H, Dk)).astype("f4"), RNG.normal(size=(T, B, H, Dk)).astype("f4")
    v = RNG.normal(size=(T, B, H, 3)).astype("f4")
    got, ref, graph = _run(Wrap(nnn.LinearAttention(a, b)), [q, k, v])
    assert_exact(got, ref, "LinearAttention")
    assert len(graph.of_type(LinearAttention)) == 1
    av = np.broadcast_to(np.asarray(a, np.float64).reshape(-1, 1), (3, Dk))
    S = np.zeros((B, H, 3, Dk))
    for t in range(T):  # S = a S + b v k^T, y = S q
        S = av * S + b * v[t][..., :, None].astype(np.float64) * k[t][..., None, :]
        assert np.allclose(ref[0][t], (S @ q[t][..., None].astype(np.float64))[..., 0], rtol=1e-4, atol=1e-4)


def test_gradients_flow_through_attention():
    T, B, H, N, D = 3, 2, 2, 4, 8
    base = [torch.from_numpy(spikes(T, B, H, N, D, p=0.5)) for _ in range(3)]
    for mod in (nnn.SpikingSelfAttention("axnor", a=0.5), nnn.StochasticAttention(bits=12, rng="torch"),
                nnn.StochasticAttention(bits=12, seed=5, seed2=7)):
        q, k, v = (x.clone().requires_grad_(True) for x in base)
        y = mod(q, k, v)
        if isinstance(mod, nnn.StochasticAttention):
            assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
        (y * torch.linspace(0.1, 1, y.shape[-1])).sum().backward()
        for name, x in zip("qkv", (q, k, v)):
            assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, (mod, name)
    lin = nnn.LinearAttention(a=0.8, b=0.5, learn=("a", "b"))
    q = torch.randn(T, B, D, requires_grad=True)
    lin(q, torch.randn(T, B, D), torch.randn(T, B, 3)).pow(2).sum().backward()
    assert lin.a.grad is not None and lin.b.grad is not None and q.grad.abs().sum() > 0


def test_torch_rng_is_refused_at_compile_time():
    T, B, N, D = 2, 1, 3, 4
    xs = [spikes(T, B, N, D) for _ in range(3)]
    with pytest.raises(FrontendError, match=r"rng='torch'.*attn\.rng = 'lfsr'"):
        trace(Wrap(nnn.StochasticAttention(rng="torch")), xs)


def test_attention_module_refuses_currents():
    class CurrentQ(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.attn = nnn.SpikingSelfAttention()
            self.lif = nnn.LIF()

        def forward(self, x):
            return self.lif(self.attn(self.fc(x), x, x))

    with pytest.raises(FrontendError, match=r"module 'attn'.*query is the output of 'fc' \(Dense\), not binary spikes"):
        trace(CurrentQ(), spikes(2, 1, 3, 4))
    with pytest.raises(FrontendError, match=r"input 'q'.* is the Q of attention .* not a spike train"):
        trace(Wrap(nnn.SpikingSelfAttention()), [RNG.random((2, 1, 3, 4)).astype("f4"), spikes(2, 1, 3, 4),
                                                 spikes(2, 1, 3, 4)])


def test_spiking_ssm_module_is_linear_then_lif_without_reset():
    ssm = nnn.SpikingSSM(5, 3, a=torch.tensor([0.5, 0.75, 1.0]))
    x = torch.randn(7, 2, 5)
    h = torch.zeros(2, 3)
    with torch.no_grad():
        want = []
        for t in range(7):  # h_t = a h_{t-1} + W x_t + c, in float64
            h = ssm.state.alpha.double() * h.double() + (x[t].double() @ ssm.proj.weight.double().T + ssm.proj.bias.double())
            want.append(h)
        got = ssm(x)
    assert torch.allclose(got.double(), torch.stack(want), atol=1e-5)
    graph = trace(torch.nn.Sequential(ssm), x.numpy())
    (lif,) = graph.of_type(LIF)
    assert lif.op.reset == "none" and graph.outputs()[0].inputs[0].port == "v"
    with torch.no_grad():
        assert np.array_equal(simulate(graph, x.numpy()).output, ssm(x).numpy())


# -- plain PyTorch: the Spikformer pattern ---------------------------------------------------------------


@pytest.mark.parametrize("form, order, scale, scale_node", [
    ("qk_v", "qk_v", 1.0, True), ("q_kv", "q_kv", 1.0, True), ("pre_scale", "qk_v", 0.25, False)])
def test_spikingjelly_spikformer_forms(form, order, scale, scale_node):
    torch.manual_seed(3)
    model = M.Spikformer(form=form)
    x = RNG.random((3, 8, 8)).astype("f4")
    graph = trace(model, x)
    (node,) = graph.of_type(SpikeAttention)
    assert (node.op.score, node.op.order, node.op.scale) == ("and", order, scale)
    assert bool(graph.of_type(Scale)) == scale_node  # '* s' after '@ v' stays a Scale (fold-scale moves it)
    # Q, K, V are the head-split neuron outputs; the transpose of k was folded away
    assert [type(graph[r.node].op).__name__ for r in node.inputs] == ["Permute"] * 3
    assert_exact([simulate(graph, x).output], [M.predict(model, x)], form)
    g = run_pipeline(graph.copy(), build_passes("fpga", ["legalize"]),
                     PassContext(target=load_target("fpga"), calibration=[x]))
    (node,) = g.of_type(SpikeAttention)
    assert node.op.scale == 0.25 and not g.of_type(Scale)


def test_snntorch_attention_in_a_time_loop():
    torch.manual_seed(4)
    model = M.SnnTorchAttention()
    x = (RNG.random((5, 3, 6, 10)) * 2).astype("f4")
    got, ref, graph = _run(model, [x])
    assert_exact(got, ref, "snntorch attention")
    (node,) = graph.of_type(SpikeAttention)
    assert node.op.order == "q_kv" and ref[0].mean() > 0.05


@pytest.mark.parametrize("kind, message", [
    ("softmax", r"spikformer_models.py:\d+: the spike-tensor product at spikformer_models.py:\d+ is passed to "
                r"tensor method .softmax\(\)"),
    ("softmax_fn", r"is passed to function F.softmax"),
    ("current_q", r"spikformer_models.py:\d+: .*left operand is the output of 'q' \(Dense\), not binary spikes"),
    ("graded_k", r"right operand is the output of 'mul' \(Scale\), not binary spikes"),
    ("scale_before_v", r"multiplied by 0.1, which float32 cannot represent"),
    ("inexact_scale", r"the scale 0.100000001.* before '@ v'.*not exact in float32"),
    ("scores_out", r"spike-tensor product at spikformer_models.py:\d+ is returned by the model"),
    ("scores_to_lif", r"is passed to module 'out_lif' \(LIFNode\)"),
    ("scores_add", r"is passed to function \+"),
    ("two_products", r"a product of the spike-tensor product .* and the spike-tensor product"),
    ("squared_scores", r"multiplied by a tensor computed from the input"),
    ("index_scores", r"spike-tensor product at spikformer_models.py:\d+ is indexed"),
])
def test_attention_lookalikes_fail_naming_the_line(kind, message):
    assert set(M.BAD_KINDS) >= {kind}
    with pytest.raises(FrontendError, match=message):
        trace(M.BadAttention(kind), RNG.random((3, 2, 6, 8)).astype("f4"))


def test_the_supported_form_of_the_lookalike_model_compiles():
    torch.manual_seed(5)
    model = M.BadAttention("none")
    x = (RNG.random((3, 2, 6, 8)) * 2).astype("f4")
    ref = M.predict(model, x)
    assert_exact([simulate(trace(model, x), x).output], [ref], "BadAttention('none')")
    assert ref.mean() > 0.02


# -- a trained Spikformer through the CLI ------------------------------------------------------------------


def _cli_outputs(tmp_path: Path, build: Path, x: np.ndarray, engine: str) -> np.ndarray:
    xp, yp = tmp_path / f"x_{engine}.npy", tmp_path / f"y_{engine}.npz"
    np.save(xp, x)
    assert main(["simulate", str(build), "--engine", engine, "--input", str(xp), "--out", str(yp)]) == 0
    data = np.load(yp)
    (key,) = data.files
    return data[key]


@pytest.mark.slow  # trains a Spikformer
def test_spikformer_trains_compiles_for_fpga_and_keeps_accuracy(tmp_path):
    xtr, ytr, xte, yte = M.digits()
    torch.manual_seed(0)
    model = M.spikformer()
    losses = M.train(model, xtr, ytr)
    assert losses[-1] < 0.5 * losses[0], losses
    ref = M.predict(model, xte)
    acc_float = float(np.mean(ref.argmax(1) == yte))
    assert acc_float > 0.8, acc_float
    ckpt, cal = tmp_path / "spikformer.pt", tmp_path / "cal.npy"
    torch.save(model.state_dict(), ckpt)
    np.save(cal, xtr[:200])
    build = tmp_path / "build"
    assert main(["compile", f"{MODELS}:spikformer", "--checkpoint", str(ckpt), "--example-input", str(cal),
                 "--target", "fpga", "--out", str(build)]) == 0
    assert_exact([_cli_outputs(tmp_path, build, xte, "float")], [ref], "Spikformer (CLI, float engine)")
    acc_int = float(np.mean(_cli_outputs(tmp_path, build, xte, "int").argmax(1) == yte))
    assert abs(acc_int - acc_float) < 0.03, (acc_float, acc_int)  # measured: 0.904 float, 0.907 int
    report = json.loads((build / "report.json").read_text())
    quant = next(e for e in report["targets"]["fpga"]["passes"] if e["pass"] == "quantize")
    assert min(quant["spike_agreement"].values()) > 0.95, quant["spike_agreement"]
