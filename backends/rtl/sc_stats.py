"""Stochastic-computing characterization in RTL: run `npuc_sc_stats` (LFSR bank, comparator
encoders, AND multipliers, MUX adder, counters) in Verilator and return the measured counts.

`measure` streams windows of ``T`` cycles with given probabilities through the
design; `model` computes the same counts from `npuc.sim.lfsr` (the exact
streams), so the hardware can be checked bit for bit before its statistics
are read: the AND of independent streams estimates ``p1 p2`` with variance
``p1 p2 (1 - p1 p2) / T``; a shared LFSR gives ``min(p1, p2)``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from ...sim import lfsr
from . import toolchain
from .render import static_source

SOURCES = ("npuc_sc_stats.v", "npuc_lfsr_bank.v", "npuc_sc_encode.v", "npuc_sc_mux.v")
COUNTS = ("n1", "n2", "n_ind", "n_shared", "n_samepoly", "n_mux")
"""Count columns: x1, x2, independent AND, shared-LFSR AND, same-polynomial AND, MUX."""


def config(bits: int = 16, leap: int | None = None, seeds: tuple[int, int, int, int] = (1, 0x2D, 0x5A5, 7)
           ) -> dict[str, int]:
    """Verilog parameters: streams A, B, C from primitive polynomials 0, 1, 2; S = polynomial 0
    with another seed. ``seeds`` = (A, B, S, C); ``leap``: steps per sample of the leap-forward
    bank (default 7: measured close to independent samples, where 1 step is not)."""
    mask = (1 << bits) - 1
    sa, sb, ss, sc = (int(s) & mask or 1 for s in seeds)
    return {"BITS": bits, "LEAP": leap or 7, "TAPS_A": lfsr.primitive_taps(bits, 0), "TAPS_B": lfsr.primitive_taps(bits, 1),
            "TAPS_C": lfsr.primitive_taps(bits, 2), "SEED_A": sa, "SEED_B": sb, "SEED_S": ss, "SEED_C": sc}


def _sources(work: Path) -> list[Path]:
    out = []
    for name in SOURCES:
        dst = work / name
        dst.write_text(static_source(name))
        out.append(dst)
    return out


def measure(rows: np.ndarray, params: dict[str, int]) -> np.ndarray:
    """Run windows ``rows[r] = (p1, p2, ps, T, leap)`` (integer probabilities out of
    ``2^BITS - 1``; ``leap`` 0: single-step streams, 1: the leap-forward bank).

    Returns:
        int64 ``[R, 6]`` counts in the order of `COUNTS`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != 5 or np.any(rows[:, 3] < 1):
        raise ValueError("rows must be [R, 5] = (p1, p2, ps, window, leap) with window >= 1")
    src_dir = toolchain.cache_root() / "sc_stats_src"
    src_dir.mkdir(parents=True, exist_ok=True)
    sources = _sources(src_dir)
    bits = int(params["BITS"])
    vparams = {k: (str(v) if k in ("BITS", "LEAP") else f"{bits}'d{int(v)}") for k, v in params.items()}
    build_dir = toolchain.build(sources, "npuc_sc_stats", vparams)
    run_dir = Path(tempfile.mkdtemp(prefix="sc_", dir=toolchain.cache_root()))
    try:
        tb = resources.files("npuc.hdl").joinpath("sc_stats_tb.py").read_text()
        (run_dir / "sc_stats_tb.py").write_text(tb)
        np.savez(run_dir / "stim.npz", rows=rows)
        env = {"NPUC_SC_STIM": str(run_dir / "stim.npz"), "NPUC_SC_RESULT": str(run_dir / "result.npz")}
        sys.path.insert(0, str(run_dir))  # the runner exports sys.path as PYTHONPATH
        try:
            toolchain.run_test(build_dir, "npuc_sc_stats", "sc_stats_tb", run_dir, env)
        finally:
            sys.path.remove(str(run_dir))
        return np.load(run_dir / "result.npz")["counts"]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def model(rows: np.ndarray, params: dict[str, int]) -> np.ndarray:
    """The counts `measure` must return, from the exact LFSR streams (`npuc.sim.lfsr.stream`)."""
    rows = np.asarray(rows, dtype=np.int64)
    bits = params["BITS"]
    streams = {}
    for mode, step in ((0, 1), (1, params["LEAP"])):
        total = int(rows[rows[:, 4] == mode, 3].sum()) * step
        streams[mode] = [lfsr.stream(bits, params[seed], total, params[taps]).astype(np.int64)[step - 1::step]
                         for seed, taps in (("SEED_A", "TAPS_A"), ("SEED_B", "TAPS_B"), ("SEED_S", "TAPS_A"),
                                            ("SEED_C", "TAPS_C"))]
    out = np.zeros((len(rows), len(COUNTS)), dtype=np.int64)
    start = {0: 0, 1: 0}
    for r, (p1, p2, ps, t, mode) in enumerate(rows):
        s = slice(start[mode], start[mode] + int(t))
        ra, rb, rs, rc = (x[s] for x in streams[int(mode)])
        x1, x2 = ra <= p1, rb <= p2
        out[r] = [x1.sum(), x2.sum(), (x1 & x2).sum(), (x1 & (ra <= p2)).sum(), (x1 & (rs <= p2)).sum(),
                  np.where(rc <= ps, x1, x2).sum()]
        start[int(mode)] += int(t)
    return out


__all__ = ["measure", "model", "config", "COUNTS"]
