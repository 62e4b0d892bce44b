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
