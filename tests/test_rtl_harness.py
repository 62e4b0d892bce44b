"""The compiled RTL testbench (``harness_<top>.cpp``, `npuc.backends.rtl.run`'s default engine)
against the cocotb testbench and the golden integer engine, bit for bit.

Both testbenches drive the same Verilator model through the same protocol, so every number
they return must agree: outputs, probes, step and layer cycle counts, event and pooling
counts and per-sample latency. Designs: the recurrent MLP (pipelined and sequential) and the conv -> max pool -> dense network of
`test_rtl_network`, and a coincidence-attention design of `test_rtl_attention`. The harness
runs with two processes (chunks of the batch from reset) and once with a reset in the middle
of a step.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import seeded_case
from test_rtl_attention import coincidence_graph
from test_rtl_network import convnet, mlp

import npuc
from npuc.backends.rtl import emit, run
from npuc.backends.rtl.sim import harness_procs
from npuc.errors import ToolchainError
from npuc.sim import simulate
from npuc.targets import load_target

STATS = ("step_cycles", "layer_cycles", "events", "pooled", "latency_cycles")


def _same(a, b, what: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _same(a[k], b[k], f"{what}[{k}]")
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


def _compare(g, art, x, reset_check=None) -> dict:
    """harness (2 processes) == cocotb on outputs, probes and every cycle/event figure; both == golden."""
    fast = run(art, x, probe=True, progress=False, engine="harness", procs=2, reset_check=reset_check)
    slow = run(art, x, probe=True, progress=False, engine="cocotb", reset_check=reset_check)
    ref = simulate(g, x, "int", probe=True)
    assert fast.stats["rtl"]["engine"] == "harness" and slow.stats["rtl"]["engine"] == "cocotb"
    for k, (a, b, r) in enumerate(zip(fast.outputs, slow.outputs, ref.outputs)):
        np.testing.assert_array_equal(a, b, err_msg=f"output {k}")
        np.testing.assert_array_equal(a, r, err_msg=f"output {k} vs golden")
    _same(fast.probes, slow.probes, "probes")
    for node, fields in fast.probes.items():
        for f, v in fields.items():
            np.testing.assert_array_equal(v, ref.probes[node][f], err_msg=f"{node}.{f} vs golden")
    for key in STATS:
        _same(fast.stats["rtl"][key], slow.stats["rtl"][key], key)
    assert fast.stats["rtl"]["cycles"] == slow.stats["rtl"]["cycles"] > 0
    return fast.stats["rtl"]


@pytest.mark.rtl
@pytest.mark.parametrize("pipeline", [1, 0])
def test_recurrent_mlp_harness_equals_cocotb(tmp_path, pipeline):
    """The pipelined top (inputs stream while earlier steps compute) and the sequential one."""
    spec = f"fpga:weight_bits=6,state_bits=12,lanes=4,pipeline={pipeline}"
    g, x = seeded_case(mlp, spec, 3, (5, 12), tmp_path / "rtl")
    st = _compare(g, tmp_path / "rtl", x)
    assert st["procs"] == 2 and st["cycles_per_second"] > 0
    # without probes (a second build, PROBE=0) the outputs are the golden ones too
    plain = run(tmp_path / "rtl", x, progress=False)
    for a, b in zip(plain.outputs, simulate(g, x, "int").outputs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.rtl
def test_conv_pool_harness_equals_cocotb_with_reset_check(tmp_path):
    g, x = seeded_case(convnet, "fpga:lanes=2", 7, (3, 1, 8, 8), tmp_path / "rtl")
    st = _compare(g, tmp_path / "rtl", x)
    mid = int(st["layer_cycles"]["c"][2].min()) // 2
    _compare(g, tmp_path / "rtl", x, reset_check=(2, mid))


@pytest.mark.rtl
def test_attention_harness_equals_cocotb(tmp_path):
    g, target, inputs, _ = coincidence_graph(13)
    emit(g, tmp_path / "rtl", target)
    _compare(g, tmp_path / "rtl", inputs(np.random.default_rng(5)), reset_check=(1, 30))


@pytest.mark.rtl
def test_harness_cycle_limit_names_the_step(tmp_path):
    g, x = seeded_case(mlp, "fpga", 1, (1, 3), tmp_path / "rtl", sizes=(3, 2, 2), steps=2)
    with pytest.raises(ToolchainError, match="sample 0 step 0: no output within 3 cycles"):
        run(tmp_path / "rtl", x, progress=False, timeout_cycles=3)


def test_harness_processes_follow_cores_cap_and_batch(monkeypatch):
    monkeypatch.delenv("NPUC_RTL_PROCS", raising=False)
    assert harness_procs(1) == 1
    assert harness_procs(100, procs=3) == 3
    assert harness_procs(2, procs=8) == 2
    monkeypatch.setenv("NPUC_RTL_PROCS", "1")
    assert harness_procs(100, procs=4) == 1
    monkeypatch.setenv("NPUC_RTL_PROCS", "many")
    with pytest.raises(ValueError, match="NPUC_RTL_PROCS"):
        harness_procs(4)


@pytest.mark.rtl
def test_cli_simulate_reports_cycles_per_second_and_reuses_the_build(tmp_path, capsys, monkeypatch):
    """The second `npuc simulate` of an unchanged design reuses the Verilator model (content-hashed
    cache) and says so; the cache starts empty but for the Verilator runtime objects."""
    from npuc.backends.rtl import toolchain
    from npuc.cli import main
    from npuc.ir import LIF, Dense, Graph, Input, Output

    real = toolchain.cache_root()
    (tmp_path / "cache").mkdir()
    if (real / "runtime").is_dir():
        (tmp_path / "cache" / "runtime").symlink_to(real / "runtime", target_is_directory=True)
    monkeypatch.setenv("NPUC_RTL_CACHE", str(tmp_path / "cache"))

    rng = np.random.default_rng(0)
    g = Graph("tiny", num_steps=4)
    g.add("x", Input((6,)))
    g.add("fc", Dense(rng.normal(0, 0.8, (4, 6)).astype(np.float32)), ["x"])
    g.add("lif", LIF(alpha=0.9, threshold=1.0), ["fc"])
    g.add("o", Output(), ["lif"])
    x = rng.random((3, 6)).astype(np.float32)
    npuc.compile(g.verify(), x, target="fpga", out=tmp_path / "b")
    np.save(tmp_path / "x.npy", x)
    for build in ("Verilator build", "Verilator model reused from the cache"):
        assert main(["simulate", str(tmp_path / "b"), "--engine", "rtl", "--input", str(tmp_path / "x.npy")]) == 0
        line = [s for s in capsys.readouterr().err.splitlines() if s.startswith("  rtl:")]
        assert len(line) == 1 and "cycles/s, compiled testbench" in line[0] and build in line[0], line
    assert len(list((tmp_path / "cache" / "harness").glob("npuc_*/harness"))) == 1
    # verify runs the probed build (PROBE=1: a second model) and reports its speed too
    assert main(["verify", str(tmp_path / "b"), "--engine", "rtl", "--input", str(tmp_path / "x.npy")]) == 0
    line = [s for s in capsys.readouterr().err.splitlines() if s.startswith("rtl:") and "cycles/s" in s]
    assert len(line) == 1 and "compiled testbench" in line[0] and "Verilator build" in line[0], line


@pytest.mark.rtl
def test_event_input_harness_equals_cocotb(tmp_path):
    """input=events: each step sends its event count and that many words (rows zero padded)."""
    from test_rtl_pipeline import spike_chain

    rng = np.random.default_rng(10)
    g = spike_chain(rng, load_target("fpga"))
    emit(g, tmp_path / "ev", load_target("fpga:input=events"))
    x = (rng.random((6, 3, 64)) < 0.1).astype(np.float32)
    _compare(g, tmp_path / "ev", x)
