"""Fail any test that starts a slow engine without the marker that `make test-fast` deselects.

The fast tier (`-m "not lava and not rtl and not yosys and not slow"`) is only fast while every
test that starts Lava's runtime, a Verilator build/simulation or a Yosys synthesis carries the
matching marker. Rather than trusting reviewers to remember, the entry points are wrapped when
their modules are first imported (never imported here: importing Lava early changes its
multiprocessing start-method handshake) and a test that used one unmarked fails with the marker
to add. Cost: one set lookup per import and per engine call.

Not seen: engines started in a child process (a test running the CLI through `subprocess`);
mark those by hand.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

import pytest

# module -> [(class name or None for a module function, attribute, engine)]
_ENTRY_POINTS: dict[str, list[tuple[str | None, str, str]]] = {
    "lava.magma.runtime.runtime": [("Runtime", "initialize", "lava")],
    "cocotb_tools.runner": [("Runner", "build", "rtl"), ("Runner", "test", "rtl")],
    "npuc.backends.rtl.toolchain": [(None, "build", "rtl"), (None, "run_test", "rtl"),
                                    (None, "build_harness", "rtl"), (None, "run_harness", "rtl"),
                                    (None, "yosys_stats", "yosys"), (None, "lint", "lint")],
    "npuc.backends.rtl.pnr": [(None, "measure", "yosys")],
}
# The marker each engine needs.
MARKER = {"lava": "lava", "rtl": "rtl", "yosys": "yosys", "lint": None}
# Verilator's --lint-only takes about a second: allowed in the fast tier, only recorded.
WHAT = {"lava": "Lava's runtime", "rtl": "Verilator (build or cocotb simulation)", "yosys": "Yosys synthesis"}

_started: set[str] = set()


def _wrap(owner: Any, attr: str, engine: str) -> None:
    fn = getattr(owner, attr)
    if getattr(fn, "_npuc_engine", None):
        return

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _started.add(engine)
        return fn(*args, **kwargs)

    wrapper._npuc_engine = engine  # type: ignore[attr-defined]
    setattr(owner, attr, wrapper)


def _patch(module: Any) -> None:
    for cls, attr, engine in _ENTRY_POINTS[module.__name__]:
        _wrap(getattr(module, cls) if cls else module, attr, engine)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for the watched modules it asks the other finders and wraps the
    loader so the entry points are patched right after the module body runs."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _ENTRY_POINTS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_body = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run_body(module)
            _patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    for name in _ENTRY_POINTS:
        if name in sys.modules:
            _patch(sys.modules[name])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    _started.clear()  # module fixtures count for the first test that requests them
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    if _started and os.environ.get("NPUC_ENGINE_AUDIT"):  # a file to list every engine use in
        with open(os.environ["NPUC_ENGINE_AUDIT"], "a") as f:
            f.write(f"{item.nodeid}\t{','.join(sorted(_started))}\n")
    missing = sorted(e for e in _started if MARKER[e] and item.get_closest_marker(MARKER[e]) is None)
    if missing:
        pytest.fail("; ".join(f"started {WHAT[e]} without @pytest.mark.{MARKER[e]}" for e in missing)
                    + " (the marker keeps it out of `make test-fast`)", pytrace=False)
    return result


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Audit runs also list each phase's duration (`<audit file>.times`), to find slow tests."""
    if os.environ.get("NPUC_ENGINE_AUDIT") and report.when in ("setup", "call"):
        with open(os.environ["NPUC_ENGINE_AUDIT"] + ".times", "a") as f:
            f.write(f"{report.nodeid}\t{report.when}\t{report.duration:.2f}\t{report.outcome}\n")
