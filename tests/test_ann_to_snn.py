"""ANN-to-SNN conversion of plain PyTorch ReLU networks (issue 15.3): trained on scikit-learn's
digits, converted with data-based threshold balancing, the SNN stays within 1 point of the ANN's
accuracy; the compiled integer graph within 1 point of the float SNN, and the FPGA build runs
with 0 RTL mismatches."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

import npuc
from npuc.cli import main
from npuc.errors import FrontendError
from npuc.frontends.ann import ann_accuracy, ann_to_snn
from npuc.sim import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package
from bench.ann_to_snn import DigitsCNN, train  # noqa: E402

STEPS = 32


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _snn_accuracy(graph, x, y, engine="float") -> float:
    return float((simulate(graph, x, engine).output.argmax(1) == y).mean())


@pytest.mark.slow  # trains
def test_relu_mlp_converts_within_one_point(digits, tmp_path):
    xtr, ytr, xte, yte = digits
    mlp = train(make_mlp(), xtr, ytr, 40)
    ann = ann_accuracy(mlp, xte, yte)
    graph = ann_to_snn(mlp, xtr[:500], STEPS)
    snn = _snn_accuracy(graph, xte, yte)
    assert ann > 0.85 and snn >= ann - 0.01, (ann, snn)
    hw = npuc.compile(graph, xtr[:500], target="fpga", out=tmp_path / "b")
    integer = float((hw.simulate(xte, "int").argmax(1) == yte).mean())
    assert integer >= snn - 0.01, (snn, integer)


@pytest.mark.slow  # trains
def test_relu_cnn_with_batchnorm_and_avgpool_converts_within_one_point(digits):
    xtr, ytr, xte, yte = digits
    cnn = train(DigitsCNN(), xtr.reshape(-1, 1, 8, 8), ytr, 20)
    ann = ann_accuracy(cnn, xte.reshape(-1, 1, 8, 8), yte)
    graph = ann_to_snn(cnn, xtr[:500].reshape(-1, 1, 8, 8), STEPS)
    snn = _snn_accuracy(graph, xte.reshape(-1, 1, 8, 8), yte)
    assert ann > 0.85 and snn >= ann - 0.01, (ann, snn)


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10))
    with pytest.raises(FrontendError, match=r"MaxPool2d\) is not supported \(max pooling .* use AvgPool2d\)"):
        ann_to_snn(model, np.zeros((4, 1, 8, 8), np.float32), 8)
    with pytest.raises(FrontendError, match="--steps T >= 1"):
        ann_to_snn(make_mlp(), np.zeros((4, 64), np.float32), 0)


def test_cli_converts_a_relu_factory(tmp_path, capsys):
    x = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    argv = ["compile", f"{__file__}:make_mlp", "--example-input", str(tmp_path / "x.npy"), "--target", "fpga",
            "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    assert "ANN-to-SNN" not in capsys.readouterr().err  # a ReLU network without the flag is not an SNN
    assert main(argv + ["--ann-to-snn"]) == 2
    assert "needs the number of time steps (--steps T)" in capsys.readouterr().err
    assert main(argv + ["--ann-to-snn", "--steps", "16"]) == 0
    assert "converted the ReLU network" in capsys.readouterr().err
    hw = npuc.load(tmp_path / "b")
    assert hw.simulate(x, "float").shape == (64, 10)


def test_report_compares_ann_and_snn_accuracy_over_steps(digits, tmp_path, capsys):
    """With --labels, the build's report holds the ANN's accuracy and the float SNN's at T/4..2T
    (each recomputed here by converting and simulating), each target's integer accuracy, a plot,
    and `npuc report` prints them."""
    xtr, ytr, _, _ = digits
    mlp = train(make_mlp(), xtr, ytr, 3)
    ckpt = tmp_path / "mlp.pt"
    torch.save(mlp.state_dict(), ckpt)
    np.save(tmp_path / "x.npy", xtr[:120])
    np.save(tmp_path / "y.npy", ytr[:120])
    out = tmp_path / "b"
    assert main(["compile", f"{__file__}:make_mlp", "--checkpoint", str(ckpt), "--example-input",
                 str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--ann-to-snn", "--steps", "8",
                 "--target", "fpga", "--out", str(out)]) == 0
    sweep = npuc.load(out).report()["ann_to_snn"]
    assert sweep["ann_accuracy"] == ann_accuracy(mlp, xtr[:120], ytr[:120])
    assert [r["steps"] for r in sweep["snn"]] == [2, 4, 8, 16]
    for r in sweep["snn"]:
        assert r["accuracy"] == _snn_accuracy(ann_to_snn(mlp, xtr[:120], r["steps"]), xtr[:120], ytr[:120])
    hw = npuc.load(out)
    integer = float((hw.simulate(xtr[:120], "int").argmax(1) == ytr[:120]).mean())
    assert sweep["int_accuracy"]["fpga"] == pytest.approx(integer, abs=1e-5)  # the report keeps 5 decimals
    assert (out / sweep["plot"]).stat().st_size > 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ANN-to-SNN accuracy" in text and "SNN integer (fpga)" in text


@pytest.mark.rtl
def test_converted_mlp_has_no_rtl_mismatches(digits, tmp_path):
    xtr, ytr, xte, _ = digits
    mlp = train(make_mlp(), xtr, ytr, 10)
    hw = npuc.compile(mlp, xtr[:200], target="fpga", steps=16, ann_to_snn=True, out=tmp_path / "b")
    result = hw.verify(xte[:4], engine="rtl")
    assert result.ok, result.format()


@pytest.mark.slow  # trains
def test_onnx_relu_network_converts_like_the_pytorch_one(digits, tmp_path, capsys):
    """torch.onnx.export of a trained ReLU CNN (Conv, BatchNormalization, Relu, AveragePool,
    Flatten, Gemm) converts to the same SNN as the PyTorch model; without --ann-to-snn the
    Relu refusal names the flag, and a graph with no neurons is one line too."""
    import warnings

    xtr, ytr, xte, yte = digits
    cnn = train(DigitsCNN(), xtr.reshape(-1, 1, 8, 8), ytr, 3)
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(cnn, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False)
    x = xtr[:300].reshape(-1, 1, 8, 8)
    np.save(tmp_path / "x.npy", x)
    from npuc.frontends import load_model

    from_onnx = load_model(str(path), example_input=[x], steps=STEPS, ann=True)
    from_torch = ann_to_snn(cnn, x, STEPS)
    xt = xte.reshape(-1, 1, 8, 8)
    assert np.array_equal(simulate(from_onnx, xt).output, simulate(from_torch, xt).output)
    base = ["compile", str(path), "--example-input", str(tmp_path / "x.npy"), "--target", "fpga", "--steps", "8",
            "--out", str(tmp_path / "b")]
    assert main(base) == 2
    assert "a ReLU network converts with --ann-to-snn --steps T" in capsys.readouterr().err
    assert main(base + ["--ann-to-snn"]) == 0
    lin = tmp_path / "lin.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (torch.zeros(1, 1, 8, 8),), str(lin),
                          dynamo=False)
    assert main(["compile", str(lin)] + base[2:]) == 2
    assert "has no spiking neurons (an ANN?)" in capsys.readouterr().err
