"""Model zoo: Spikformer as its reference implementation writes it (issue 14, pattern 2).

`tests/models/spikformer_ref.py` follows the public CIFAR-10 ``model.py`` (MLP, SSA,
Block, SPS, Spikformer): ``Linear`` + ``BatchNorm1d`` through ``.transpose(-1, -2)`` on
``x.flatten(0, 1)``, heads by ``reshape(...).permute(0, 1, 3, 2, 4)``, spike residuals,
``head(x.mean(2).mean(0))``; plus the Spike-driven Transformer's 1x1 Conv1d/Conv2d + BN
forms. Float engine == PyTorch bit for bit; the reduced block runs in the integer engine,
in Verilator and in Lava (loihi2, attention as npuc's custom NpucAttention process) with 0
mismatches, also at 64 tokens where the per-token Linears run as npuc's NpucTokenDense; the
CIFAR-10 configuration compiles for fpga, and (``--full``) for loihi2 onto cores and chips.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from models.spikformer_ref import ConvFormBlock, OneBlock, Spikformer, calibrate_bn
from spikingjelly.activation_based import functional

import npuc
from npuc.errors import FrontendError, NpucError
from npuc.frontends import trace
from npuc.ir import Graph, ops
from npuc.sim import simulate

T = 4


def _reference(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    functional.reset_net(model)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    functional.reset_net(model)
    return y


def _rates(model: torch.nn.Module, x: np.ndarray) -> dict[str, float]:
    """Firing rate of every LIF layer on ``x`` (so that exactness is not tested on silent layers)."""
    rates: dict[str, float] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: rates.__setitem__(n, float(o.mean())))
             for n, m in model.named_modules() if type(m).__name__ == "LIFNode"]
    _reference(model, x)
    for h in hooks:
        h.remove()
    return rates


def _block(seed: int = 0) -> tuple[OneBlock, np.ndarray]:
    """One block at reduced width: 16 tokens of 8 spike features, 32 features, 2 heads, T = 4, batch 2."""
    torch.manual_seed(seed)
    x = (torch.rand(T, 2, 16, 8, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
    return calibrate_bn(OneBlock(features=8, dim=32, num_heads=2), x, seed), x.numpy()


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_block_float_equals_pytorch(seed):
    model, x = _block(seed)
    rates = _rates(model, x)
    assert all(r > 0.02 for r in rates.values()), rates  # attn_lif included
    graph = trace(model, x)
    assert np.array_equal(simulate(graph, x, "float").output, _reference(model, x))


@pytest.mark.parametrize("kind,shape", [("conv1d", (T, 2, 8, 16)), ("conv2d", (T, 2, 8, 4, 4))])
def test_spike_driven_conv_forms_float_exact_and_compile(kind, shape, tmp_path):
    x = (torch.rand(*shape, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    torch.manual_seed(2)
    model = calibrate_bn(ConvFormBlock(kind), x, 2)
    xn = x.numpy()
    assert np.array_equal(simulate(trace(model, xn), xn, "float").output, _reference(model, xn))
    hw = npuc.compile(model, xn, target="fpga", out=tmp_path / "b")
    assert np.all(np.isfinite(hw.simulate(xn, engine="int")))


def test_reference_block_compiles_and_runs_in_the_integer_engine(tmp_path):
    model, x = _block(0)
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    ref, got = _reference(model, x), hw.simulate(x, engine="int")
    assert got.shape == ref.shape
    # integer logits track the float ones (random weights: compare correlation, not argmax)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.9


@pytest.mark.lava
def test_reference_block_on_loihi2_has_no_lava_mismatches(tmp_path):
    """The attention runs as npuc's custom NpucAttention process; the readout integrator (no reset, read
    through v) as NpucNeuron; everything else as stock Lava processes."""
    model, x = _block(0)
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "lava" / "network.json").read_text())
    assert sorted((e["process"], e["node"]) for e in doc["custom_processes"]) == [
        ("NpucAttention", "matmul_1"), ("NpucNeuron", "head.time_mean")]
    ref = hw.simulate(x, engine="int", probe=True)
    assert ref.probes["block.attn.attn_lif"]["spikes"].mean() > 0.02  # the attention drives its neuron
    result = hw.verify(x, engine="lava")
    assert result.ok, result.format()
    assert result.mismatches == 0 and sum(result.compared.values()) > 100_000


@pytest.mark.lava
def test_64_token_block_runs_per_token_linears_as_npuc_token_dense(tmp_path):
    """At 64 tokens the MLP's per-token Linears would be block-diagonal stock Denses of 2^24 weights:
    they run as NpucTokenDense (one [out, in] weight), the narrower q/k/v/proj ones stay stock Dense;
    Lava equals the integer engine bit for bit."""
    torch.manual_seed(0)
    x = (torch.rand(T, 1, 64, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    model = calibrate_bn(OneBlock(features=8, dim=32, num_heads=2), x, 0)
    x = x.numpy()
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "lava" / "network.json").read_text())
    token = sorted(e["node"] for e in doc["custom_processes"] if e["process"] == "NpucTokenDense")
    assert token == ["block.mlp.fc1_linear.0", "block.mlp.fc1_linear.1", "block.mlp.fc2_linear"]
    assert any(c["lava_process"] == "Dense" and c["node"].startswith("block.attn.q_linear")
               for c in doc["connections"])
    assert hw.simulate(x, engine="int", probe=True).probes["block.mlp.fc2_lif"]["spikes"].mean() > 0.02
    result = hw.verify(x, engine="lava")
    assert result.ok, result.format()
    assert result.mismatches == 0 and sum(result.compared.values()) > 200_000


def test_mean_of_currents_over_tokens_is_refused():
    class CurrentMean(OneBlock):
        def forward(self, x):
            return self.head(self.embed_linear(x).mean(2).mean(0))

    model, x = _block(0)
    bad = CurrentMean(features=8, dim=32, num_heads=2).eval()
    bad.load_state_dict(model.state_dict())
    with pytest.raises(FrontendError, match=r"mean over dim \d of a .* a mean of currents depends on the summation order"):
        trace(bad, x)


@pytest.mark.rtl
def test_reference_block_rtl_has_no_mismatches(tmp_path):
    model, x = _block(0)
    hw = npuc.compile(model, x, target="fpga", out=tmp_path / "b")
    result = hw.verify(x, engine="rtl")
    assert result.ok, result.format()


def _cifar10() -> tuple[torch.nn.Module, np.ndarray]:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    return calibrate_bn(Spikformer(), x, passes=1), x.numpy()


@pytest.mark.slow
@pytest.mark.rtl
def test_cifar10_spikformer_traces_compiles_and_maps(tmp_path):
    """The CIFAR-10 configuration: 32x32x3 through SPS, 64 tokens, 384 features, 8 heads, 4 blocks.
    Stock Lava processes cannot run its attention (plain loihi2: `test_cifar10_spikformer_compiles_for_loihi2`)."""
    model, xn = _cifar10()
    graph = trace(model, xn)
    assert np.array_equal(simulate(graph, xn, "float").output, _reference(model, xn))
    t0 = time.perf_counter()
    hw = npuc.compile(model, xn, target="fpga", out=tmp_path / "fpga")
    seconds = time.perf_counter() - t0
    assert (tmp_path / "fpga" / "report.json").exists() and seconds > 0 and hw is not None
    # all of it in the integer engine (the RTL's contract), every spiking layer firing
    got = hw.simulate(xn, engine="int", probe=True)
    assert got.output.shape == (1, 10)
    rates = {k: float(v["spikes"].mean()) for k, v in got.probes.items() if "spikes" in v}
    assert len(rates) > 30 and min(rates.values()) > 0, rates
    with pytest.raises(NpucError, match=r"has no Loihi 2 process in lava-nc: compile it with --target fpga"):
        npuc.compile(model, xn, target="loihi2:stock_only=1", out=tmp_path / "loihi2")


def test_batchnorm_over_tokens_is_not_folded_as_features(tmp_path):
    """``bn(linear(x))`` with ``BatchNorm1d(N)`` normalises tokens, not the Linear's features:
    float stays exact; it folds into the neurons (per token), and compiling fails naming them instead of
    folding it into the Linear's weights as if it were per feature."""

    class TokenNorm(OneBlock):
        def __init__(self) -> None:
            super().__init__(features=8, dim=32, num_heads=2)
            self.embed_bn = torch.nn.BatchNorm1d(16)

        def forward(self, x):
            T, B, N, _ = x.shape
            y = self.embed_bn(self.embed_linear(x.flatten(0, 1))).reshape(T, B, N, self.dim)
            return self.head(self.embed_lif(y).mean(2).mean(0))

    x = (torch.rand(T, 2, 16, 8, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    torch.manual_seed(4)
    model = calibrate_bn(TokenNorm(), x, 4)
    xn = x.numpy()
    assert np.array_equal(simulate(trace(model, xn), xn, "float").output, _reference(model, xn))
    with pytest.raises(NpucError, match=r"neuron 'embed_lif': its per-neuron threshold/gain varies within the output"):
        npuc.compile(model, xn, target="fpga", out=tmp_path / "b")


class _TimeMeanHead(torch.nn.Module):
    """Linear-LIF on ``[T, B, F]``, then a time mean read by a layer, in the ``kind`` variant."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        from models.spikformer_ref import _lif

        self.kind = kind
        from spikingjelly.activation_based import neuron

        self.fc, self.lif, self.head = torch.nn.Linear(8, 16), _lif(), torch.nn.Linear(16, 4)
        self.lif2 = neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="s")

    def forward(self, x):
        cur = self.fc(x)
        if self.kind == "currents":
            return self.head(cur.mean(0))
        s = self.lif(cur)
        if self.kind == "neuron":
            return self.lif2(self.head(s.mean(0)))
        return self.head(s.mean(0))


@pytest.mark.parametrize("kind,steps,message", [
    ("spikes", 4, None),
    ("spikes", 3, r"a mean over 3 time steps feeds a layer: .* unless T is a power of two"),
    ("currents", 4, r"a mean over time feeds a layer: supported of spikes"),
    ("neuron", 4, r"may only feed stateless layers up to the model's output"),
])
def test_time_mean_read_by_a_layer(kind, steps, message):
    torch.manual_seed(5)
    model = _TimeMeanHead(kind).eval()
    with torch.no_grad():
        model.fc.weight.mul_(4.0)
    x = np.random.default_rng(5).random((steps, 3, 8)).astype(np.float32)
    if message is None:
        assert np.array_equal(simulate(trace(model, x), x, "float").output, _reference(model, x))
    else:
        with pytest.raises(FrontendError, match=message):
            trace(model, x)


@pytest.mark.full
def test_cifar10_spikformer_compiles_for_loihi2(tmp_path):
    """Plain loihi2 (custom processes allowed): map-cores packs its ~3e9 synapses onto cores without
    materialising them (per-token Linears and convolutions stay compact), the Lava module keeps one
    weight per Linear (NpucTokenDense), and the report lists cores, chips and every custom process.
    Measured 2026-12-07 (load average 10-18 on 2 shared cores): 1,017 s, peak RSS 5.4 GB, 28,987 cores
    on 227 chips."""
    model, xn = _cifar10()
    npuc.compile(model, xn, target="loihi2", out=tmp_path / "b")
    report = json.loads((tmp_path / "b" / "report.json").read_text())["targets"]["loihi2"]
    cores = report["mapping"]["cores"]
    assert cores["used"] > 1000 and cores["chips"] == -(-cores["used"] // 128)
    custom = {(e["process"], e["node"]) for e in report["custom_processes"]}
    assert {n for p, n in custom if p == "NpucAttention"} == {"matmul_1", "matmul_3", "matmul_5", "matmul_7"}
    q = Graph.load(tmp_path / "b" / "loihi2")
    per_token = {n.name for n in q if isinstance(n.op, ops.Dense) and len(q[n.inputs[0].node].shape) > 1}
    assert per_token and {n for p, n in custom if p == "NpucTokenDense"} == per_token
