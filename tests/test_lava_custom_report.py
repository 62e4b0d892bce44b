"""Custom Lava processes in the build: network.json, the lava README and ``npuc report`` name every
``NpucNeuron`` and what it needs on the chip; ``--stock-only`` / ``stock_only=1`` keeps today's
stock-only behaviour. Compile only (no Lava run; tests/test_lava_custom.py runs them)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import npuc
from npuc.backends.lava import LavaBackendWarning
from npuc.cli import main
from npuc.ir import LIF, Dense, Graph, Input, Output
from npuc.targets import load_target

MODELS = Path(__file__).parent / "models" / "snntorch_models.py"


def _graph():
    rng = np.random.default_rng(2)
    g = Graph("tiny", num_steps=6)
    g.add("x", Input((10,)))
    g.add("fc1", Dense(rng.normal(0, 0.7, (12, 10)).astype("f4")), ["x"])
    g.add("lif1", LIF(alpha=0.9, threshold=1.0, reset="subtract", reset_timing="delayed"), ["fc1"])
    g.add("fc2", Dense(rng.normal(0, 0.7, (4, 12)).astype("f4")), ["lif1"])
    g.add("lif2", LIF(alpha=0.9, threshold=1.0, reset="value"), ["fc2"])
    g.add("o", Output(), ["lif2"])
    return g.verify(), rng.random((4, 10)).astype("f4")


def test_report_lists_custom_processes(tmp_path, capsys):
    g, x = _graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LavaBackendWarning)
        npuc.compile(g, x, target="loihi2", out=tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "lava" / "network.json").read_text())
    assert [c["node"] for c in doc["custom_processes"]] == ["lif1"]
    kinds = {p["node"]: p["lava_process"] for p in doc["populations"]}
    assert kinds == {"x": "RingBuffer", "lif1": "NpucNeuron", "lif2": "LIFReset"}
    assert "microcode" in (tmp_path / "b" / "lava" / "README.md").read_text()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "custom processes" in out and "NpucNeuron" in out and "microcode" in out


def test_stock_only_flag_and_option(tmp_path, capsys):
    """snntorch's default Leaky (subtract reset, reset_delay=True) needs a custom process: refused
    with --stock-only or stock_only=1, approximated with --allow-approx, exact by default."""
    assert load_target("loihi2:stock_only=1").profile.reset_modes == ("value",)
    assert load_target("loihi2").profile.reset_modes == ("value", "subtract", "none")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(0.5, 1.5, (2, 10)).astype("f4"))
    base = ["compile", f"{MODELS}:hidden_loop", "--example-input", str(x)]
    for extra in (["--stock-only", "--target", "loihi2"], ["--target", "loihi2:stock_only=1"]):
        assert main([*base, *extra, "--out", str(tmp_path / "s")]) != 0
        assert "uses subtract reset" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LavaBackendWarning)
        assert main([*base, "--stock-only", "--target", "loihi2", "--allow-approx", "--out", str(tmp_path / "s")]) == 0
        assert main([*base, "--target", "loihi2", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "s" / "lava" / "network.json").read_text())["custom_processes"] == []
    assert len(json.loads((tmp_path / "d" / "lava" / "network.json").read_text())["custom_processes"]) == 1
    with pytest.raises(Exception, match="stock_only"):
        load_target("loihi2:stock_only=maybe")
