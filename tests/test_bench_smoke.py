"""Every benchmark runs in its quick form, so none can rot (figures are not asserted here)."""

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package

from bench.run_all import BENCHMARKS  # noqa: E402

# What each quick benchmark starts (all of them compile, train or time models: slow).
ENGINES = {"sim_speed": [pytest.mark.lava, pytest.mark.rtl], "rtl_efficiency": [pytest.mark.rtl],
           "accuracy": [pytest.mark.lava, pytest.mark.rtl], "model_zoo": [pytest.mark.lava, pytest.mark.rtl]}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(b[0], marks=ENGINES.get(b[0], [])) for b in BENCHMARKS])
def test_benchmark_quick(name):
    module = importlib.import_module(f"bench.{name}")
    module.main(["--quick"])
