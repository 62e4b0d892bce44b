"""The check most RTL tests end with: the Verilog against the golden integer engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npuc.backends.rtl import run
from npuc.ir import Graph
from npuc.sim import simulate
from npuc.sim.compare import compare


def rtl_matches_int(g: Graph, art: Path, x, nodes, what: str = "", **run_kw):
    """Run ``x`` on the probe build of the RTL in ``art`` and on the integer engine: the probes of
    ``nodes`` and every output must be identical (``what`` heads a mismatch report). Returns the
    two results (reference, RTL)."""
    ref = simulate(g, x, "int", probe=True)
    got = run(art, x, probe=True, progress=False, **run_kw)
    cmp = compare({n: ref.probes[n] for n in nodes}, got.probes, engine="rtl")
    assert cmp.ok and cmp.mismatches == 0, what + cmp.format()
    for a, b in zip(ref.outputs, got.outputs):
        np.testing.assert_array_equal(a, b)
    return ref, got
