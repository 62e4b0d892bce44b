"""The engine guard itself: a test that starts a Verilator build without `rtl` fails, with it passes."""

import engine_guard

INNER = '''
import pytest

from npuc.backends.rtl import toolchain


def _start_a_build():
    try:  # enters the (wrapped) build entry point, then stops at the option check
        toolchain.build([], "top", {}, opt="-O9")
    except ValueError:
        pass


def test_unmarked():
    _start_a_build()


@pytest.mark.rtl
def test_marked():
    _start_a_build()


def test_no_engine():
    pass
'''


def test_guard_fails_only_the_unmarked_test(pytester):
    pytester.makeconftest("from engine_guard import pytest_runtest_call, pytest_runtest_setup  # noqa: F401\n"
                          "import engine_guard\nengine_guard.install()\n")
    pytester.makeini("[pytest]\nmarkers =\n    rtl: Verilator\n")
    pytester.makepyfile(test_inner=INNER)
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    finally:
        engine_guard._started.clear()  # the inner tests' engine use is not this test's
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["started Verilator * without @pytest.mark.rtl *", "FAILED test_inner.py::test_unmarked *"])
