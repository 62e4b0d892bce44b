import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests import the independent `reference` module

from hypothesis import settings  # noqa: E402

# CI sees the same generated examples every run (a red CI must mean a regression, not an unlucky
# draw); HYPOTHESIS_PROFILE=explore draws new examples each run for local bug hunting.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

import engine_guard  # noqa: E402
from engine_guard import pytest_runtest_call, pytest_runtest_logreport, pytest_runtest_setup  # noqa: E402,F401  (hooks)

engine_guard.install()


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="also run the `full` tests: library models at size in Verilator/Lava (many minutes each)")


def pytest_collection_modifyitems(config, items):
    """`full` tests are deselected (not skipped) unless --full is given: `make test` stays under 20 min."""
    if config.getoption("--full"):
        return
    keep = [it for it in items if it.get_closest_marker("full") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[it for it in items if it.get_closest_marker("full") is not None])
        items[:] = keep
