"""SpikingJelly models compiled through the CLI: single-step nodes in a user loop,
multi-step nodes with layer.* wrappers, SeqToANNContainer with a static input
repeated over time; float engine == SpikingJelly (eval mode), batch 1 and >1."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from models import harness
from models import spikingjelly_models as M
from spikingjelly.activation_based import functional, neuron

from npuc.frontends import trace

MODELS = Path(__file__).parent / "models" / "spikingjelly_models.py"


def _reference(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    model.eval()
    functional.reset_net(model)
    with torch.no_grad():
        out = harness.as_list(model(torch.from_numpy(x)))
    functional.reset_net(model)
    return out


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
            if isinstance(m, neuron.ParametricLIFNode):
                m.w.uniform_(-1.5, 0.5, generator=g)


SHAPES = {"m": ((M.T, 2, 2, 6, 6), 2.0), "s": ((M.T, 2, 10), 1.5)}


@pytest.mark.parametrize("mode", ["m", "s"])
@pytest.mark.parametrize("node", sorted(M.NODES))
def test_models_match_spikingjelly(tmp_path, capsys, mode, node):
    name = f"{mode}_{node}"
    seed = zlib.crc32(name.encode()) % 10_000
    torch.manual_seed(seed)
    model = getattr(M, name)()
    _randomize(model, seed)
    rng = np.random.default_rng(seed)
    shape, scale = SHAPES[mode]
    build = harness.compile_cli(tmp_path, f"{MODELS}:{name}", model, harness.drive(rng, shape, scale), capsys)
    for batch in (1, 3):
        x = harness.drive(rng, (shape[0], batch, *shape[2:]), scale)
        ref = _reference(model, x)
        harness.assert_exact(harness.simulate_cli(tmp_path, build, x, f"x{batch}"), ref, f"{name} batch {batch}")
    assert 0.02 < harness.spike_rate(ref[0]) < 0.98


def test_multi_step_synapses_are_time_folded():
    x = harness.drive(np.random.default_rng(0), (M.T, 2, 2, 6, 6))
    graph = trace(M.m_lif(), x)
    folded = {n.name for n in graph if n.meta.get("time_folded")}
    assert {"0", "1", "4", "8"} <= folded  # conv, bn, depthwise conv, linear
    assert graph.inputs()[0].op.layout == "TB" and graph.num_steps is None


def test_static_input_repeated_over_time(tmp_path, capsys):
    torch.manual_seed(7)
    model = M.static_repeat()
    rng = np.random.default_rng(7)
    build = harness.compile_cli(tmp_path, f"{MODELS}:static_repeat", model, harness.drive(rng, (2, 1, 6, 6), 2.0), capsys)
    graph = trace(model, harness.drive(rng, (2, 1, 6, 6)))
    assert graph.num_steps == M.T and graph.inputs()[0].op.layout == "B"
    assert graph.outputs()[0].op.decoding == "mean"
    for batch in (1, 4):
        x = harness.drive(rng, (batch, 1, 6, 6), 2.0)
        ref = _reference(model, x)
        harness.assert_exact(harness.simulate_cli(tmp_path, build, x, f"x{batch}"), ref, f"batch {batch}")
        assert ref[0].sum() > 0


def test_train_mode_model_is_compiled_in_eval_mode():
    """SpikingJelly's LIFNode(decay_input=False, v_reset=0.) runs a different formula
    in train mode; npuc compiles eval mode (and puts the model in it)."""
    model = M.s_lif_nodecay()
    model.train()
    x = harness.drive(np.random.default_rng(1), (M.T, 2, 10))
    graph = trace(model, x)
    assert not model.training
    assert {n.meta["mode"] for n in graph if "mode" in n.meta} == {"eval"}


@pytest.mark.parametrize("node", sorted(M.NODES))
def test_canonical_fields_agree(node):
    """Measured: agreement 1.0 for every node type (T=20, B=8, conv net, strong inputs)."""
    model = getattr(M, f"m_{node}")()
    _randomize(model, 3)
    x = harness.drive(np.random.default_rng(3), (20, 8, 2, 6, 6), 2.0)
    agreement = harness.canonical_agreement(trace(model, x), x)
    assert min(agreement.values()) >= 0.999, agreement


@pytest.mark.parametrize("cls", ["QIFNode", "EIFNode", "IzhikevichNode", "KLIFNode"])
def test_unsupported_neuron_is_refused_by_name(cls):
    """A SpikingJelly neuron holds its surrogate function as a child module; it must still be one
    primitive module, refused by name, not traced into (the trace used to fail inside
    SpikingJelly's TorchScript helpers with a proxy type error)."""
    from spikingjelly.activation_based import layer

    from npuc.errors import NpucError

    net = torch.nn.Sequential(layer.Linear(10, 6), getattr(neuron, cls)())
    functional.set_step_mode(net, "m")
    with pytest.raises(NpucError, match=rf"module '1' \(spikingjelly\.activation_based\.neuron\.{cls}\) is not supported"):
        trace(net, harness.drive(np.random.default_rng(0), (M.T, 2, 10)))
