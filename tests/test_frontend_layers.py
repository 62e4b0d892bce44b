"""torch.nn layers and tensor operations in spiking models: residual adds, scalar
multiplies, dropout, grouped/depthwise convs, batch norm, pools, reshapes,
functional calls, two inputs, --steps for one-step models; and the errors for
what the IR cannot express."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import snntorch.utils
import torch
import torch.nn as nn
from models import layer_models as M
from models.harness import as_list, assert_exact, compile_cli, drive, simulate_cli

from npuc.frontends import FrontendError, trace
from npuc.ir import Add, AvgPool2d, BatchNorm, Conv1d, Conv2d, Dense, Permute, Reshape, Scale

MODELS = Path(__file__).parent / "models" / "layer_models.py"


def _reference(model, *xs):
    model.eval()
    with torch.no_grad():
        return as_list(model(*(torch.from_numpy(x) for x in xs)))


def test_residual_scale_dropout_rate_decoding(tmp_path, capsys):
    torch.manual_seed(0)
    model = M.residual()
    rng = np.random.default_rng(0)
    build = compile_cli(tmp_path, f"{MODELS}:residual", model, drive(rng, (M.T, 2, 12)), capsys)
    for batch in (1, 3):
        x = drive(rng, (M.T, batch, 12))
        ref = _reference(model, x)
        assert_exact(simulate_cli(tmp_path, build, x, f"x{batch}"), ref)
        assert 0 < ref[0].mean() < 1
    g = trace(model, x)
    assert len(g.of_type(Add)) == 2 and len(g.of_type(Scale)) == 3
    assert g.outputs()[0].op.decoding == "mean"


def test_time_folded_conv_layers_two_inputs(tmp_path, capsys):
    torch.manual_seed(1)
    model = M.folded_conv()
    rng = np.random.default_rng(1)
    ex = [drive(rng, (M.T, 2, 4, 16)), drive(rng, (M.T, 2, 2, 8, 8))]
    build = compile_cli(tmp_path, f"{MODELS}:folded_conv", model, ex, capsys)
    for batch in (1, 3):
        xs = [drive(rng, (M.T, batch, 4, 16)), drive(rng, (M.T, batch, 2, 8, 8))]
        assert_exact(simulate_cli(tmp_path, build, xs, f"x{batch}"), _reference(model, *xs))
    g = trace(model, xs)
    assert [n.op.layout for n in g.inputs()] == ["TB", "TB"]
    assert {type(n.op) for n in g} >= {Conv1d, BatchNorm, AvgPool2d, Permute, Reshape}
    assert [n.op.groups for n in g.of_type(Conv1d)] == [2, 8]
    assert all(n.meta.get("time_folded") is True for n in g.of_type(Conv1d, Conv2d, Dense, BatchNorm))
    assert g["gap"].meta["source"] == "AdaptiveAvgPool2d"


def test_functional_calls_and_iteration_over_time(tmp_path, capsys):
    torch.manual_seed(2)
    model = M.functional()
    rng = np.random.default_rng(2)
    build = compile_cli(tmp_path, f"{MODELS}:functional", model, drive(rng, (M.T, 2, 1, 6, 6)), capsys)
    for batch in (1, 3):
        x = drive(rng, (M.T, batch, 1, 6, 6))
        ref = _reference(model, x)
        assert_exact(simulate_cli(tmp_path, build, x, f"x{batch}"), ref)
        assert ref[0].sum() > 0


def test_one_step_model_with_steps_takes_a_static_input(tmp_path, capsys):
    torch.manual_seed(3)
    model = M.step_model()
    rng = np.random.default_rng(3)
    build = compile_cli(tmp_path, f"{MODELS}:step_model", model, drive(rng, (2, 12)), capsys, steps=7)
    x = drive(rng, (3, 12))
    snntorch.utils.reset(model)
    model.eval()
    with torch.no_grad():
        steps = [model(torch.from_numpy(x)) for _ in range(7)]
    ref = [torch.stack([s for s, _ in steps]).numpy(), torch.stack([m for _, m in steps]).numpy()]
    assert_exact(simulate_cli(tmp_path, build, x), ref)


class _Expand(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.lif = snntorch.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        return self.fc(x.unsqueeze(0).expand(5, -1, -1))


class _Divide(_Expand):
    def forward(self, x):
        return self.lif(self.fc(x) / 2.0)


class _PythonRecurrence(_Expand):
    def forward(self, x):
        snntorch.utils.reset(self)
        spk = torch.zeros(x.shape[1], 4)
        out = []
        for t in range(x.shape[0]):
            spk = self.lif(self.fc(x[t]) + spk)
            out.append(spk)
        return torch.stack(out)


class _BatchIndex(_Expand):
    def forward(self, x):
        return self.lif(self.fc(x[0]))


@pytest.mark.parametrize("cls, shape, message", [
    (_Expand, (2, 4), "use .repeat()"),
    (_Divide, (2, 4), "x / c and x * (1/c) differ"),
    (_PythonRecurrence, (5, 2, 4), "values of different time steps"),
    (_BatchIndex, (2, 4), "only a time step"),
])
def test_unsupported_constructs_fail_clearly(cls, shape, message):
    with pytest.raises(FrontendError, match=re.escape(message)):
        trace(cls(), torch.zeros(shape))
