"""Model and checkpoint loading through the CLI: safe torch.load, state_dict
unwrapping, and one-line errors (no traceback) for everything that can go wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sinabs
import sinabs.layers as sl
import torch
from models import bad_models as M
from models.harness import as_list, assert_exact, drive, simulate_cli

from npuc.cli import main
from npuc.frontends import FrontendError, load_model

MODELS = Path(__file__).parent / "models" / "bad_models.py"
SMALL = f"{MODELS}:small"


@pytest.fixture
def example(tmp_path):
    x = drive(np.random.default_rng(0), (8, 2, 6))
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy", x


def _compile(tmp_path, spec, ckpt=None, extra=()):
    argv = ["compile", spec, "--example-input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "out")]
    if ckpt is not None:
        argv += ["--checkpoint", str(ckpt)]
    return main(argv + list(extra))


def _one_line_error(capsys, rc, *fragments):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("npuc: error:")]
    assert len(line) == 1, err
    for f in fragments:
        assert f in line[0], line[0]
    return line[0]


def test_wrapped_prefixed_checkpoint_loads_exactly(tmp_path, capsys, example):
    """{'model_state_dict': ...} with DataParallel ('module.') and torch.compile
    ('_orig_mod.') prefixes plus optimizer state loads into the model."""
    torch.manual_seed(0)
    model = M.small()
    sd = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "c.pt")
    assert _compile(tmp_path, SMALL, tmp_path / "c.pt") == 0
    x = example[1]
    with torch.no_grad():
        ref = as_list(model(torch.from_numpy(x)))
    assert_exact(simulate_cli(tmp_path, tmp_path / "out", x), ref)


def test_sinabs_state_buffers_are_dropped(tmp_path):
    """sinabs saves v_mem/i_syn of the last batch in state_dict; loading them into a
    fresh layer would fail on the shape. They are neuron state, not weights."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), sl.LIF(tau_mem=5.0, tau_syn=3.0))
    with torch.no_grad():
        model(torch.randn(3, 4, 6))
    assert model.state_dict()["1.v_mem"].shape == (3, 8)
    torch.save(model.state_dict(), tmp_path / "c.pt")
    (tmp_path / "m.py").write_text(
        "import torch, sinabs.layers as sl\n"
        "def f():\n    return torch.nn.Sequential(torch.nn.Linear(6, 8), sl.LIF(tau_mem=5.0, tau_syn=3.0))\n"
    )
    x = drive(np.random.default_rng(1), (2, 5, 6))
    graph = load_model(f"{tmp_path / 'm.py'}:f", str(tmp_path / "c.pt"), [x])
    from npuc.sim import simulate

    sinabs.reset_states(model)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(simulate(graph, x).output, ref)


def test_unsafe_pickle_needs_trust(tmp_path, capsys, example):
    model = M.small()
    torch.save({"state_dict": model.state_dict(), "config": M.TrainingConfig()}, tmp_path / "c.pt")
    rc = _compile(tmp_path, SMALL, tmp_path / "c.pt")
    _one_line_error(capsys, rc, "TrainingConfig", "--trust-checkpoint", "c.pt")
    assert not (tmp_path / "out").exists()
    assert _compile(tmp_path, SMALL, tmp_path / "c.pt", ["--trust-checkpoint"]) == 0


def test_corrupt_checkpoint(tmp_path, capsys, example):
    torch.save(M.small().state_dict(), tmp_path / "good.pt")
    (tmp_path / "c.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    _one_line_error(capsys, _compile(tmp_path, SMALL, tmp_path / "c.pt"), "corrupt", "c.pt")
    (tmp_path / "g.pt").write_bytes(b"\x80\x02garbage" * 20)
    _one_line_error(capsys, _compile(tmp_path, SMALL, tmp_path / "g.pt"), "corrupt", "g.pt")
    _one_line_error(capsys, _compile(tmp_path, SMALL, tmp_path / "missing.pt"), "not found")


def test_missing_and_unexpected_keys_are_named(tmp_path, capsys, example):
    sd = M.small().state_dict()
    del sd["fc.bias"]
    sd["fc2.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "c.pt")
    _one_line_error(capsys, _compile(tmp_path, SMALL, tmp_path / "c.pt"), "missing keys fc.bias",
                    "unexpected keys fc2.weight")


def test_shape_mismatch_is_named(tmp_path, capsys, example):
    sd = M.small().state_dict()
    sd["fc.weight"] = torch.zeros(3, 6)
    torch.save(sd, tmp_path / "c.pt")
    _one_line_error(capsys, _compile(tmp_path, SMALL, tmp_path / "c.pt"), "fc.weight (3, 6) vs model (8, 6)")


@pytest.mark.parametrize(
    "factory, fragments",
    [
        ("unsupported_layer", ["module '1'", "GELU", "not supported", "supported"]),
        ("unsupported_neuron", ["module '1'", "StateLeaky", "supported neuron types", "snntorch.Leaky", "spikingjelly"]),
        ("subclassed_neuron", ["MyLeaky", "a subclass of snntorch._neurons.leaky.Leaky", "supported neuron types"]),
        ("data_dependent", ["bad_models.py:", "control flow depends on tensor values"]),
        ("step_branch", ["step 1 of the time loop", "differently from step 0"]),
        ("no_neurons", ["no spiking neuron layer"]),
        ("not_a_module", ["returned int, not an nn.Module"]),
        ("needs_argument", ["must take no arguments"]),
        ("missing_factory", ["has no attribute 'missing_factory'"]),
        ("keyword_names", ["KeywordNames", "Python keywords ('class')", "rename them"]),
        ("raises_in_factory", ["raises_in_factory() raised RuntimeError: boom in factory"]),
        ("norse_record_states", ["module 'lif' (LIF)", "record_states=True is not supported", "record_states=False"]),
        ("norse_carried_state", ["module 'lif' (LIF)", "a state argument is not supported", "module(x)"]),
        ("norse_final_state_computed", ["'readout' reads the final state (last time step) of module 'lif' (LIF)",
                                        "only as a model output"]),
        ("norse_sequential_state_as_model", ["norse SequentialState", "returns (output, states)",
                                             "out, _ = self.net(x); return out"]),
    ],
)
def test_model_errors_are_one_line(tmp_path, capsys, example, factory, fragments):
    _one_line_error(capsys, _compile(tmp_path, f"{MODELS}:{factory}"), *fragments)


def test_spec_errors(tmp_path, capsys, example):
    _one_line_error(capsys, _compile(tmp_path, str(tmp_path / "nope.py:f")), "not found")
    _one_line_error(capsys, _compile(tmp_path, "no_such_package_xyz.models:f"), "cannot import module")
    _one_line_error(capsys, _compile(tmp_path, str(MODELS)), "expected path/file.py:factory")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    _one_line_error(capsys, _compile(tmp_path, f"{tmp_path / 'syntax.py'}:f"), "syntax.py', line 1")


def test_wrong_example_input_shape(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((8, 2, 5), np.float32))
    _one_line_error(capsys, _compile(tmp_path, SMALL), "running 'fc' on the example input failed")


def test_package_module_spec(tmp_path):
    """package.module:factory imports like user code (here the tests' models package)."""
    x = drive(np.random.default_rng(2), (8, 2, 6))
    graph = load_model("models.bad_models:small", None, [x])
    assert graph.num_steps == 8 and graph.inputs()[0].op.layout == "TB"


def test_python_errors_are_frontend_errors():
    with pytest.raises(FrontendError, match="example input"):
        load_model(f"{SMALL}", None, None)


def test_trace_after_a_partial_spikingjelly_import():
    """Converters load before fx patches torch: a SpikingJelly module imported mid-trace would
    run torch.jit.script inside the trace and fail (fresh interpreter: import state is global)."""
    import subprocess
    import sys

    code = ("import numpy as np, torch.nn as nn\n"
            "import spikingjelly.activation_based.base\n"
            "from npuc.frontends import trace\n"
            "from npuc.nn import LIF\n"
            "g = trace(nn.Sequential(nn.Linear(4, 3), LIF(alpha=0.9)), np.zeros((5, 2, 4), dtype=np.float32))\n"
            "print(len(g))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-1500:]
