"""The npuc command line: help, simulate on saved graphs, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from npuc.cli import main
from npuc.ir import LIF, Dense, Graph, Input, Output
from npuc.sim import simulate


@pytest.fixture
def graph_dir(tmp_path):
    rng = np.random.default_rng(0)
    g = Graph("cli", num_steps=6)
    g.add("x", Input((5,)))
    g.add("fc", Dense(rng.normal(0, 0.8, (3, 5)).astype(np.float32)), ["x"])
    g.add("lif", LIF(alpha=0.8), ["fc"])
    g.add("o", Output(), ["lif"])
    g.save(tmp_path / "g")
    x = rng.random((4, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path, g, x


def test_help_lists_the_verbs():
    out = subprocess.run([sys.executable, "-m", "npuc.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for verb in ("compile", "simulate", "verify", "report", "demo", "inspect"):
        assert verb in out


def test_simulate_float_writes_outputs(graph_dir):
    d, g, x = graph_dir
    assert main(["simulate", str(d / "g"), "--engine", "float", "--input", str(d / "x.npy"), "--out", str(d / "y.npy")]) == 0
    assert np.array_equal(np.load(d / "y.npy"), simulate(g, x).output)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "{d}/nope", "--input", "{d}/x.npy"], "no such directory"),
        (["simulate", "{d}/g", "--input", "{d}/missing.npy"], "input file not found"),
        (["simulate", "{d}/g", "--input", "{d}/bad.npy"], "expects shape [B, 5]"),
        (["simulate", "{d}/g", "--engine", "int", "--input", "{d}/x.npy"], "not quantized"),
        (["inspect", "{d}"], "neither an npuc build directory"),
        (["simulate", "{d}/g", "--input", "{d}/nan.npy"], "nan.npy: 1 NaN or infinite value(s)"),
        (["simulate", "{d}/g", "--input", "{d}/empty.npy"], "empty.npy: empty array"),
        (["simulate", "{d}/g", "--input", "{d}/str.npy"], "is not numeric"),
        (["simulate", "{d}/g", "--input", "{d}/x.npy", "--out", "{d}/y.txt"], "give a .npy (or .npz) path"),
    ],
)
def test_errors_are_one_line(graph_dir, capsys, argv, message):
    d, _, x = graph_dir
    np.save(d / "bad.npy", np.zeros((2, 7), np.float32))
    nan = x.copy()
    nan[1, 2] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "empty.npy", x[:0])
    np.save(d / "str.npy", np.array(["a", "b"]))
    rc = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_inspect_prints_nodes(graph_dir, capsys):
    d, _, _ = graph_dir
    assert main(["inspect", str(d / "g")]) == 0
    out = capsys.readouterr().out
    assert "lif" in out and "Dense" in out and "5" in out


def test_compile_input_errors_are_one_line_and_write_nothing(graph_dir, capsys):
    """Bad labels, an --out that is a file, and non-finite inputs to the Python API."""
    import npuc

    d, g, x = graph_dir
    np.save(d / "y3.npy", np.arange(3))
    np.save(d / "y2d.npy", np.zeros((4, 2)))
    np.save(d / "yneg.npy", np.array([0, 1, -1, 2]))
    np.save(d / "x64.npy", np.random.default_rng(0).random((4, 64)).astype(np.float32))
    base = ["compile", "npuc.demo.models:mlp", "--example-input", str(d / "x64.npy"), "--target", "fpga"]
    cases = [
        (["--labels", str(d / "nope.npy"), "--out", str(d / "b")], "labels file not found"),
        (["--labels", str(d / "y3.npy"), "--out", str(d / "b")], "3 labels for 4 calibration samples"),
        (["--labels", str(d / "y2d.npy"), "--out", str(d / "b")], "1-D array of integer class indices"),
        (["--labels", str(d / "yneg.npy"), "--out", str(d / "b")], "class indices >= 0 (found -1)"),
        (["--out", str(d / "x.npy")], "exists and is not a directory"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("npuc: error:")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (d / "b").exists()
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="input 'x' has 1 NaN or infinite value"):
        npuc.compile(g, bad, target="fpga", out=d / "b")
    assert not (d / "b").exists()


def test_unwritable_simulate_output_is_an_error(graph_dir, capsys):
    d, _, _ = graph_dir
    rc = main(["simulate", str(d / "g"), "--input", str(d / "x.npy"), "--out", str(d / "x.npy" / "y.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write" in err and "Traceback" not in err


def test_terminal_output_labels_warnings_and_calibration_cap(tmp_path, capsys):
    """simulate/verify --labels print an accuracy (decoded here independently: the class with the
    largest output); npuc warnings are one `npuc: warning:` line (no source path, third-party noise
    dropped); a capped calibration says so."""
    import warnings

    import npuc
    from npuc.cli import _show_warning
    from npuc.errors import NpucWarning

    d = tmp_path
    rng = np.random.default_rng(1)
    x = rng.random((300, 64)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.save(d / "ybig.npy", np.full(300, 12))
    assert main(["compile", "npuc.demo.models:mlp", "--example-input", str(d / "x.npy"), "--labels",
                 str(d / "y.npy"), "--target", "fpga", "--out", str(d / "b")]) == 0
    assert "calibrated on the first 256 of 300 samples" in capsys.readouterr().err
    hw = npuc.load(d / "b")
    for engine in ("float", "int"):
        out = np.asarray(hw.simulate(x, engine), dtype=np.float64)
        scores = out.reshape(out.shape[0], -1) if out.ndim == 2 else out.sum(0)
        want = np.mean(scores.argmax(1) == y)
        assert main(["simulate", str(d / "b"), "--engine", engine, "--input", str(d / "x.npy"),
                     "--labels", str(d / "y.npy")]) == 0
        assert f"accuracy: {want:.4f} on 300 labelled samples" in capsys.readouterr().err
    assert main(["simulate", str(d / "b"), "--input", str(d / "x.npy"), "--labels", str(d / "ybig.npy")]) == 2
    assert "label 12 is not a class index of the model's 10 outputs" in capsys.readouterr().err
    _show_warning(NpucWarning("layer 'l1' never spikes"), NpucWarning, "/elsewhere/x.py", 3)
    _show_warning(FutureWarning("torch.jit is deprecated"), FutureWarning, "/site-packages/torch/jit.py", 9)
    with warnings.catch_warnings():
        _show_warning(NpucWarning("layer 'l1' never spikes"), NpucWarning, "/elsewhere/x.py", 3)
    assert capsys.readouterr().err == "npuc: warning: layer 'l1' never spikes\n"
