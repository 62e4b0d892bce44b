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
    ],
)
def test_errors_are_one_line(graph_dir, capsys, argv, message):
    d, _, _ = graph_dir
    np.save(d / "bad.npy", np.zeros((2, 7), np.float32))
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
