"""Measured timing and resources (`npuc.backends.rtl.pnr`, ``npuc report --synth --family``): Yosys
synthesis for a family, nextpnr place and route for Fmax and utilisation, fits / does not fit.

One tiny LIF MLP (10-12-4, T=6) compiled once per module; Yosys and nextpnr results are cached
by design hash, so the ecp5 figures are computed once."""

from __future__ import annotations

import json

import numpy as np
import pytest

import npuc
from npuc.backends.rtl import pnr, rtl_report, run
from npuc.builddir import BuildDir
from npuc.cli import main
from npuc.errors import UserError
from npuc.ir import LIF, Dense, Graph, Input, Output

pytestmark = pytest.mark.yosys


def tiny_mlp() -> tuple[Graph, np.ndarray]:
    rng = np.random.default_rng(2)
    g = Graph("tiny", num_steps=6)
    g.add("x", Input((10,)))
    g.add("fc1", Dense(rng.normal(0, 0.7, (12, 10)).astype("f4"), rng.normal(0, 0.1, 12).astype("f4")), ["x"])
    g.add("lif1", LIF(alpha=0.9, threshold=1.0, reset="value"), ["fc1"])
    g.add("fc2", Dense(rng.normal(0, 0.7, (4, 12)).astype("f4")), ["lif1"])
    g.add("lif2", LIF(alpha=0.9, threshold=1.0, reset="value"), ["fc2"])
    g.add("o", Output(), ["lif2"])
    return g.verify(), rng.random((16, 10)).astype("f4")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    g, x = tiny_mlp()
    out = tmp_path_factory.mktemp("pnr") / "b"
    npuc.compile(g, x, target="fpga", out=out)
    np.save(out.parent / "x.npy", x[:2])
    return out


@pytest.mark.rtl
def test_report_synth_ecp5_writes_measured_figures(build, capsys):
    assert main(["report", str(build), "--synth", "--family", "ecp5", "--input", str(build.parent / "x.npy")]) == 0
    printed = capsys.readouterr().out
    assert "family ecp5, device LFE5U-85F" in printed and "Fmax" in printed
    s = json.loads((build / "report.json").read_text())["targets"]["fpga"]["synth"]
    assert s["family"] == "ecp5" and s["device"].startswith("LFE5U-85F") and s["fits"] is True
    assert s["fmax_mhz"] > 0 and all(s[k] > 0 for k in ("lut", "ff"))
    assert s["bram"] >= 0 and s["dsp"] >= 0
    # the --input run is the deployment build (PROBE=0): its cycles as they are, nothing subtracted
    sim = run(build / "rtl", np.load(build.parent / "x.npy"), probe=False, progress=False)
    deployed = rtl_report(BuildDir(build).int_graph(), build / "rtl", sim, yosys=False)["total"]["cycles_per_step"]
    assert 0 < s["cycles_per_step"] == pytest.approx(deployed, abs=1e-9)
    assert s["latency_us"] == pytest.approx(s["cycles_per_step"] * 6 / s["fmax_mhz"], rel=1e-3)
    assert s["utilisation"]["lut"]["available"] == 83640


def test_xilinx_has_resources_but_no_fmax(build):
    s = pnr.measure(build / "rtl", "xilinx")
    assert s["fmax_mhz"] is None and s["place_and_route"] is False
    assert s["lut"] > 0 and s["ff"] > 0 and s["fits"] is True


def test_too_big_for_a_small_ice40_reports_fits_false(build):
    s = pnr.measure(build / "rtl", "ice40", "hx1k")
    assert s["fits"] is False and s["fmax_mhz"] is None
    assert s["reason"].startswith("does not fit iCE40HX1K") and "lut" in s["reason"]
    assert s["utilisation"]["lut"]["used"] > s["utilisation"]["lut"]["available"] == 1280


def test_unknown_device_is_a_one_line_error(build):
    with pytest.raises(UserError, match="unknown ecp5 device 'hx8k': choose from 12k, 25k, 45k, 85k"):
        pnr.measure(build / "rtl", "ecp5", "hx8k")


def test_device_without_synth_and_bad_device_are_one_line_cli_errors(build, capsys):
    assert main(["report", str(build), "--device", "85k"]) == 2
    assert "--device needs --synth" in capsys.readouterr().err
    assert main(["report", str(build), "--synth", "--family", "ice40", "--device", "85k"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "npuc: error: unknown ice40 device '85k': choose from hx1k, hx8k, up5k"
