"""npuc.nn: surrogate gradients flow, a tiny model trains, and every option of the
LIF traces to a graph whose float simulation equals the module bit for bit."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from models import npuc_models as M
from models.harness import assert_exact, compile_cli, simulate_cli

import npuc.nn as nnn
from npuc.frontends import trace
from npuc.ir import LIF
from npuc.sim import simulate

MODELS = Path(__file__).parent / "models" / "npuc_models.py"
SPIKES = {
    "binary": {},
    "ternary": {"threshold_lo": -0.6},
    "multilevel": {"compare": "ge", "levels": 4},
    "bernoulli": {"bits": 12, "seed": 9},
}
RESETS = [("same", "subtract"), ("same", "value"), ("same", "none"), ("delayed", "subtract"),
          ("delayed", "value"), ("delayed_charge", "subtract"), ("delayed_charge", "value")]


def _toy_data(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 16, generator=g)
    y = (x[:, :8].sum(1) > x[:, 8:].sum(1)).long()
    return x, y


@pytest.mark.parametrize("spike", sorted(SPIKES))
def test_surrogate_gradients_flow(spike):
    torch.manual_seed(0)
    lif = nnn.LIF(alpha=torch.full((8,), 0.9), threshold=0.5, learn=("alpha", "threshold"), spike=spike,
                  **SPIKES[spike])
    fc = nn.Linear(4, 8)
    x = torch.rand(10, 3, 4) * 2
    out = lif(fc(x))
    out.sum().backward()
    for name, p in [("fc.weight", fc.weight), ("alpha", lif.alpha), ("threshold", lif.threshold)]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.slow  # trains a model
def test_a_tiny_model_trains_and_compiles_exactly(tmp_path, capsys):
    torch.manual_seed(0)
    model = M.classifier()
    x, y = _toy_data()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    build = compile_cli(tmp_path, f"{MODELS}:classifier", model, x[:4].numpy(), capsys)
    xt, _ = _toy_data(32, seed=1)
    with torch.no_grad():
        ref = model(xt).numpy()
    assert_exact(simulate_cli(tmp_path, build, xt.numpy()), [ref])


@pytest.mark.parametrize("encoder", ["rate", "bernoulli", "latency", "timecode", "current"])
def test_encoders_become_the_input_encoding(encoder):
    torch.manual_seed(1)
    model = M.Classifier(encoder)
    x, _ = _toy_data(5, seed=2)
    graph = trace(model, x)
    (inp,) = graph.inputs()
    assert inp.op.layout == "B" and inp.op.encoding == model.enc.encoding and graph.num_steps == M.T
    res = simulate(graph, x.numpy(), probe=[inp.name])
    assert np.array_equal(res.probes[inp.name]["out"], model.enc(x).numpy())
    with torch.no_grad():
        assert np.array_equal(res.output, model(x).numpy())


def test_rate_and_latency_encoders_follow_the_encoding_definition():
    """Independent check against the Encoding docstring (counts and spike times)."""
    x = torch.rand(6, 16)
    xq = np.floor(np.clip(x.numpy().astype(np.float64), 0, 1) * 65535 + 0.5)
    rate = nnn.RateEncoder(M.T)(x).numpy()
    assert np.array_equal(rate.sum(0), np.floor(M.T * xq / 65535 + 0.5))
    assert np.all(np.diff(rate, axis=0) <= 0)  # the first k steps
    lat = nnn.LatencyEncoder(M.T)(x).numpy()
    assert np.all(lat.sum(0) == 1)
    want = np.floor((1 - xq / 65535) * (M.T - 1) + 0.5)
    assert np.all(np.abs(lat.argmax(0) - want) <= 1)


@pytest.mark.parametrize("spike, timing_reset", list(itertools.product(sorted(SPIKES), RESETS)))
def test_every_lif_option_traces_exactly(spike, timing_reset):
    timing, reset = timing_reset
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Linear(6, 10),
        nnn.LIF(alpha=torch.rand(10), alpha_i=0.5, bias=0.1, gain=1.5, threshold=0.8, reset=reset, reset_value=-0.2,
                reset_timing=timing, spike=spike, v_min=-1.5, v_init=0.1, **SPIKES[spike]),
        nn.Linear(10, 3),
        nnn.IF(threshold=0.7, compare="ge", output="v"),
    )
    x = (torch.rand(15, 2, 6) * 2 - 0.5)
    graph = trace(net, x)
    ops = [n.op for n in graph.of_type(LIF)]
    assert ops[0].spike == spike and ops[0].reset_timing == timing and ops[0].form == "npuc"
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.array_equal(simulate(graph, x.numpy()).output, ref)
    assert graph.inputs()[0].op.layout == "TB"


def test_invalid_options_are_rejected_by_the_ir_checks():
    with pytest.raises(ValueError, match="threshold_lo"):
        nnn.LIF(spike="ternary")
    with pytest.raises(ValueError, match="reset_timing"):
        nnn.LIF(reset_timing="later")
    with pytest.raises(ValueError, match="learn"):
        nnn.LIF(learn=("tau",))


def test_npuc_nn_is_exported():
    import npuc

    assert npuc.nn.LIF is nnn.LIF and isinstance(nnn.RateEncoder(3), nn.Module)
