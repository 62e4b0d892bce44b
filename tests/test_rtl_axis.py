"""The AXI4-Stream wrapper (``<top>_axis.v``) beside the valid/ready top: samples driven through
s_axis with random tvalid gaps and random m_axis backpressure give the golden integer engine's
outputs bit for bit, with tlast on each sample's last output word. The build points
``NPUC_MEM_DIR`` at the memory images by absolute path (the simulation runs elsewhere)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from builders import seeded_case
from test_rtl_network import mlp

from npuc.backends.rtl import emit, toolchain
from npuc.backends.rtl.sim import _decode_readouts, encode_words, load_design
from npuc.sim import simulate
from npuc.targets import load_target

pytestmark = pytest.mark.rtl
TESTS = Path(__file__).resolve().parent


def run_axis(art: Path, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Build ``<top>_axis`` with Verilator and play ``x`` through it; returns the decoded outputs,
    the tlast word indices and the design metadata."""
    meta = load_design(art)
    top = f"{meta['top']}_axis"
    words = encode_words(meta, x)
    sources = [*toolchain.design_sources(art), art / f"{top}.v"]
    build = toolchain.build(sources, top, {}, defines={"NPUC_MEM_DIR": f'"{art / "mem"}"'})
    run_dir = Path(tempfile.mkdtemp(prefix="axis_", dir=toolchain.cache_root()))  # no mem/ here
    np.savez(run_dir / "stim.npz", words=words)
    n_out = sum(r["n"] for r in meta["readouts"] if not r["probe"])
    env = {"NPUC_AXIS_STIM": str(run_dir / "stim.npz"), "NPUC_AXIS_RESULT": str(run_dir / "result.npz"),
           "NPUC_AXIS_WORDS_OUT": str(n_out), "NPUC_AXIS_IN_W": str(meta["in_w"])}
    sys.path.insert(0, str(TESTS))  # the runner exports sys.path as PYTHONPATH: axis_tb is found
    try:
        toolchain.run_test(build, top, "axis_tb", run_dir, env)
    finally:
        sys.path.remove(str(TESTS))
    with np.load(run_dir / "result.npz") as f:
        out, tlast = f["out"], f["tlast"]
    batch, steps, _ = words.shape
    outputs, _, _ = _decode_readouts(meta, out, False, steps, batch)
    return outputs, tlast, meta


@pytest.mark.parametrize("spec", ["fpga", "fpga:lanes=4"])
def test_axis_wrapper_is_bit_exact_with_tlast_per_sample(spec, tmp_path):
    g, x = seeded_case(mlp, spec, 3, (3, 12), tmp_path / "rtl")
    ref = simulate(g, x, "int")
    got, tlast, meta = run_axis(tmp_path / "rtl", x)
    for a, b in zip(ref.outputs, got):
        np.testing.assert_array_equal(a, b)
    assert ref.outputs[0].any() and ref.outputs[1].any()  # spikes and membranes, not all zeros
    per_sample = 10 * sum(r["n"] for r in meta["readouts"] if not r["probe"])
    assert tlast.tolist() == [per_sample * (b + 1) - 1 for b in range(3)]


def test_axis_wrapper_and_integration_files_are_lint_clean_and_listed(tmp_path):
    target = load_target("fpga")
    g = mlp(np.random.default_rng(1), target)
    emit(g, tmp_path / "rtl", target)
    art = tmp_path / "rtl"
    top = load_design(art)["top"]
    listed = (art / "filelist.f").read_text().split()
    assert listed == [*(art / "files.f").read_text().split(), f"{top}_axis.v"]
    assert toolchain.lint([art.resolve() / f for f in listed], top=f"{top}_axis", cwd=art) == []
    for tcl in ("vivado.tcl", "quartus.tcl"):
        text = (art / tcl).read_text()
        assert all(f in text for f in listed) and "NPUC_MEM_DIR" in text
        assert all(m.name in text for m in (art / "mem").glob("*.hex"))
        assert str(tmp_path) not in text  # resolved when sourced: no absolute path at emit time
    for f in listed:
        assert (art / f).read_text().startswith("`timescale 1ns / 1ps\n")
