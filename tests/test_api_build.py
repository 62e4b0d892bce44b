"""npuc.compile on an IR graph: build directory layout, engines, report, atomic failure."""

import json

import numpy as np
import pytest

import npuc
from npuc.cli import main
from npuc.errors import UserError
from npuc.ir import LIF, Dense, Graph, Input, Output
from npuc.passes.base import PassError


def small_graph(reset="value"):
    rng = np.random.default_rng(2)
    g = Graph("tiny", num_steps=6)
    g.add("x", Input((10,)))
    g.add("fc1", Dense(rng.normal(0, 0.7, (12, 10)).astype("f4"), rng.normal(0, 0.1, 12).astype("f4")), ["x"])
    g.add("lif1", LIF(alpha=0.9, threshold=1.0, reset=reset), ["fc1"])
    g.add("fc2", Dense(rng.normal(0, 0.7, (4, 12)).astype("f4")), ["lif1"])
    g.add("lif2", LIF(alpha=0.9, threshold=1.0, reset=reset), ["fc2"])
    g.add("o", Output(), ["lif2"])
    return g.verify(), rng.random((16, 10)).astype("f4")


def test_compile_graph_for_both_targets(tmp_path):
    g, x = small_graph()
    hw = npuc.compile(g, x, target=["fpga", "loihi2"], out=tmp_path / "build")
    assert sorted(hw.targets) == ["fpga", "loihi2"]
    for sub in ("graph", "fpga", "loihi2", "manifest.json", "report.json"):
        assert (tmp_path / "build" / sub).exists()
    out_f = hw.simulate(x, "float")
    assert out_f.shape == (6, 16, 4) and np.array_equal(out_f, npuc.sim.simulate(g, x).output)
    out_i = hw.simulate(x, "int", target="fpga")
    assert out_i.dtype == np.int64 and np.mean(out_i == out_f) > 0.9
    rep = hw.report()
    quant = next(e for e in rep["targets"]["fpga"]["passes"] if e["pass"] == "quantize")
    assert set(quant["spike_agreement"]) == {"lif1", "lif2"}
    json.dumps(rep)  # the report is plain JSON


def test_int_engine_and_inspect_from_the_cli(tmp_path, capsys):
    g, x = small_graph()
    npuc.compile(g, x, target="fpga", out=tmp_path / "b")
    np.save(tmp_path / "x.npy", x)
    assert main(["simulate", str(tmp_path / "b"), "--engine", "int", "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").dtype == np.int64
    assert main(["inspect", str(tmp_path / "b"), "--target", "fpga"]) == 0
    assert "QLIF" in capsys.readouterr().out


def test_failed_compile_leaves_no_output(tmp_path):
    g, x = small_graph(reset="subtract")  # loihi2's stock processes have no subtract reset
    with pytest.raises(PassError, match="subtract reset"):
        npuc.compile(g, x, target=["fpga", "loihi2:stock_only=1"], out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".npuc-build")]


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    g, x = small_graph()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an npuc build directory"):
        npuc.compile(g, x, target="fpga", out=tmp_path / "b")
    assert (tmp_path / "b" / "precious.txt").read_text() == "keep me"


def test_whole_build_is_byte_identical_across_runs(tmp_path):
    """Every file of a build except report.json (which records timings) is byte-identical
    when the same model is compiled twice, mapping and placement included."""
    g, x = small_graph()
    for d in ("a", "b"):
        npuc.compile(g, x, target=["fpga", "loihi2"], out=tmp_path / d)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.parts[0] == "loihi2" for f in files) and any(f.suffix == ".v" for f in files)
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    differ = [str(f) for f in files
              if f.name != "report.json" and (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert differ == []


def test_engine_and_target_kind_must_agree(tmp_path, capsys):
    g, x = small_graph()
    npuc.compile(g, x, target=["fpga", "loihi2"], out=tmp_path / "b")
    np.save(tmp_path / "x.npy", x[:2])
    for verb, engine, target in (("verify", "lava", "fpga"), ("simulate", "rtl", "loihi2")):
        rc = main([verb, str(tmp_path / "b"), "--engine", engine, "--target", target, "--input", str(tmp_path / "x.npy")])
        err = capsys.readouterr().err
        assert rc == 2 and f"the {engine} engine runs the" in err and f"--target {target} is a target of kind" in err
    rc = main(["simulate", str(tmp_path / "b"), "--engine", "int", "--target", "fpga:weight_bits=3",
               "--input", str(tmp_path / "x.npy")])
    assert rc == 2 and "target options apply when compiling" in capsys.readouterr().err
    npuc.compile(g, x, out=tmp_path / "f")  # float only
    rc = main(["simulate", str(tmp_path / "f"), "--engine", "int", "--input", str(tmp_path / "x.npy")])
    assert rc == 2 and "compiled without a target" in capsys.readouterr().err


def test_lint_accepts_a_relative_path(tmp_path, monkeypatch):
    from npuc.backends.rtl import lint

    g, x = small_graph()
    npuc.compile(g, x, target="fpga", out=tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    assert lint("b/rtl") == []


@pytest.mark.slow  # a compile in a child process
def test_sigterm_during_compile_leaves_no_partial_build(tmp_path):
    """A killed compile removes its temporary directory (SIGTERM unwinds like Ctrl-C)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 64)).astype(np.float32))
    p = subprocess.Popen([sys.executable, "-m", "npuc.cli", "compile", "npuc.demo.models:mlp", "--example-input",
                          str(tmp_path / "x.npy"), "--target", "fpga", "--target", "loihi2", "--out",
                          str(tmp_path / "o")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".npuc-build-*")) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed = p.poll() is None
    if killed:
        os.kill(p.pid, signal.SIGTERM)
    rc = p.wait(timeout=120)
    assert not list(tmp_path.glob(".npuc-build-*"))
    assert not killed or (rc == 128 + signal.SIGTERM and not (tmp_path / "o").exists())


def test_one_step_model_needs_steps_or_sequence_calibration(tmp_path):
    rng = np.random.default_rng(1)
    g = Graph("onestep", num_steps=None)
    g.add("x", Input((10,), layout="TB"))
    g.add("fc", Dense(rng.normal(0, 0.7, (4, 10)).astype("f4")), ["x"])
    g.add("lif", LIF(alpha=0.9), ["fc"])
    g.add("o", Output(), ["lif"])
    with pytest.raises(UserError, match=r"one time step per call.*--steps T.*\[T, B, 10\]"):
        npuc.compile(g.verify(), rng.random((3, 10)).astype("f4"), target="fpga", out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    hw = npuc.compile(g, rng.random((5, 3, 10)).astype("f4"), target="fpga", out=tmp_path / "b")
    assert hw.simulate(rng.random((5, 2, 10)).astype("f4"), "int").shape == (5, 2, 4)


def test_report_prints_tables_and_redraws_the_core_map(tmp_path, capsys):
    import shutil

    g, x = small_graph()
    npuc.compile(g, x, target=["loihi2"], out=tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "report")
    assert main(["report", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "b" / "report" / "core_map_loihi2.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"core map: {png}" in out and "mapping on" in out


def test_manifest_hashes_the_rtl_integration_files(tmp_path):
    """The AXI4-Stream wrapper, filelist.f and the Vivado / Quartus scripts are build files: hashed in
    the manifest, so an edit after compile is caught like any other generated source."""
    g, x = small_graph()
    npuc.compile(g, x, target="fpga", out=tmp_path / "b")
    files = json.loads((tmp_path / "b" / "manifest.json").read_text())["files"]
    for name in ("rtl/filelist.f", "rtl/vivado.tcl", "rtl/quartus.tcl", "rtl/npuc_tiny_axis.v"):
        assert name in files, name
    with open(tmp_path / "b" / "rtl" / "vivado.tcl", "a") as f:
        f.write("# edited\n")
    with pytest.raises(UserError, match="rtl/vivado.tcl"):
        npuc.load(tmp_path / "b").simulate(x, "rtl")
