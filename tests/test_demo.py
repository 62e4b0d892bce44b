"""`npuc demo --quick`: the bundled model through every engine, verified, with a report."""

import json

import pytest

from npuc.cli import main


@pytest.mark.lava
@pytest.mark.rtl
@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d"), "--quick", "--no-synth"]) == 0
    summary = json.loads((tmp_path / "d" / "report" / "summary.json").read_text())
    for engine in ("lava", "rtl", "attention rtl"):
        assert summary["mismatches"][engine]["mismatches"] == 0 and summary["mismatches"][engine]["compared_values"] > 0
    acc = summary["accuracy"]
    assert acc["float"]["accuracy"] > 0.95
    for engine in ("int (loihi2)", "int (fpga)"):
        assert acc[engine]["accuracy"] >= acc["float"]["accuracy"] - 0.01
    assert acc["attention: float"]["accuracy"] > 0.9
    assert acc["attention: int (fpga)"]["accuracy"] >= acc["attention: float"]["accuracy"] - 0.03
    assert summary["fpga"]["cycles_per_step_measured"] > 0 and summary["loihi2"]["cores"] >= 1
    for png in ("accuracy.png", "raster_float.png"):
        assert (tmp_path / "d" / "report" / png).stat().st_size > 1000
