"""``npuc compile MODEL.nir --dt --reset`` and the silent-layer warning of compile and report."""

from __future__ import annotations

import dataclasses
import warnings

import nir
import numpy as np
import pytest

from npuc.builddir import BuildDir
from npuc.cli import main

HAS_V_RESET = "v_reset" in {f.name for f in dataclasses.fields(nir.LIF)}


@pytest.fixture
def slow_lif_file(tmp_path):
    """Input(4) -> Affine(identity) -> LIF(tau = 10 ms, r = 1, threshold 1), written by nir itself
    (no npuc.dt). v approaches x with time constant tau: over 20 steps of the default dt = 0.1 ms
    it reaches at most 1.5 * (1 - 0.99**20) = 0.27 (silent); with dt = 1 ms it crosses 1."""
    kw = {"v_reset": np.zeros(4)} if HAS_V_RESET else {}
    nodes = {
        "in": nir.Input(np.array([4])),
        "fc": nir.Affine(np.eye(4, dtype=np.float32), np.zeros(4, np.float32)),
        "lif": nir.LIF(tau=np.full(4, 1e-2), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4), **kw),
        "out": nir.Output(np.array([4])),
    }
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "out")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ng = nir.NIRGraph(nodes=nodes, edges=edges)
    nir.write(tmp_path / "slow.nir", ng)
    x = np.random.default_rng(0).uniform(1.0, 1.5, (20, 8, 4)).astype(np.float32)  # [T, B, 4]
    np.save(tmp_path / "x.npy", x)
    return tmp_path


def _compile(d, out, *extra, target="loihi2"):
    return main(["compile", str(d / "slow.nir"), "--example-input", str(d / "x.npy"), "--target", target,
                 "--out", str(d / out), *extra])


def test_silent_layer_warned_in_compile_and_report(slow_lif_file, capsys):
    d = slow_lif_file
    assert _compile(d, "b1", "--reset", "value") == 0
    err = capsys.readouterr().err
    line = "warning: layer 'lif' never spikes on the calibration data (8 samples, float model)"
    assert err.count(line) == 1, err
    assert main(["report", str(d / "b1")]) == 0
    assert capsys.readouterr().out.count("layer 'lif' never spikes") == 1


def test_dt_and_reset_options(slow_lif_file, capsys):
    d = slow_lif_file
    assert _compile(d, "b2", "--dt", "1e-3", "--reset", "subtract", target="fpga") == 0
    assert "never spikes" not in capsys.readouterr().err
    g = BuildDir(d / "b2").float_graph()
    assert g.meta["source"]["dt"] == 1e-3
    assert g["lif"].op.reset == "subtract"
    assert np.allclose(g["lif"].op.alpha, 0.9)
    assert _compile(d, "b3", "--dt", "1e-3", "--reset", "value") == 0
    op = BuildDir(d / "b3").float_graph()["lif"].op
    assert (op.reset, op.reset_value) == ("value", 0.0)


def test_dt_and_reset_refused_for_other_models(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    rc = main(["compile", "model.py:make", "--example-input", str(tmp_path / "x.npy"), "--reset", "value",
               "--out", str(tmp_path / "b")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["npuc: error: model 'model.py:make': reset applies to NIR models (.nir) only"]
