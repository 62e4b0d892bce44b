"""Benchmark 9: `npuc explore` points per minute and `npuc evaluate` samples per second,
local worker processes vs a dask LocalCluster, with the scaling efficiency.

* explore: the digits MLP over a fixed grid of FPGA points (no synthesis: compile,
  integer-engine accuracy on the held-out set, memory and latency costs), each run in a
  fresh output directory (no cache), wall time including worker start-up;
* evaluate: the best build on the digits tiled to a large data set, in chunks.

Scaling efficiency = (rate with N workers / rate with 1 worker) / N. The machine's load
average is printed with the tables (other jobs on shared cores move these figures).

Run from the repository root: ``python -m bench.explore_bench [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import npuc
from bench.common import Table, machine
from npuc.demo.models import digits_split

CKPT = str(Path(npuc.demo.__file__).parent / "digits_mlp.pt")
MODEL = "npuc.demo.models:mlp"


def _configs(workers: int) -> list[tuple[str, dict]]:
    cfg = [("local, 1 process", {"workers": 1})]
    if workers > 1:
        cfg += [(f"local, {workers} processes", {"workers": workers}),
                (f"LocalCluster, {workers} workers", {"scheduler": f"local:{workers}"})]
    return cfg


def bench_explore(space: str, workers: int, tmp: Path) -> list[dict]:
    (xtr, ytr), (xte, yte) = digits_split()
    rows = []
    for name, kw in _configs(workers):
        t0 = time.perf_counter()
        res = npuc.explore(MODEL, xte, yte, "fpga", space, tmp / name.replace(" ", "_").replace(",", ""),
                           checkpoint=CKPT, calibration_data=xtr, calibration_labels=ytr, progress=False, **kw)
        sec = time.perf_counter() - t0
        rows.append({"runner": name, "workers": kw.get("workers") or workers, "points": res.measured,
                     "seconds": sec, "points/min": 60 * res.measured / sec, "_rows": res.rows})
    return rows


def bench_evaluate(build: Path, samples: int, workers: int) -> list[dict]:
    (xtr, ytr), _ = digits_split()
    reps = -(-samples // len(xtr))
    x, y = np.tile(xtr, (reps, 1))[:samples], np.tile(ytr, reps)[:samples]
    rows = []
    for name, kw in _configs(workers):
        ev = npuc.evaluate(build, x, y, chunk=1024, out=build.parent / "eval", **kw)
        rows.append({"runner": name, "workers": kw.get("workers") or workers, "samples": ev.samples,
                     "seconds": ev.seconds, "samples/s": ev.samples_per_second, "accuracy": ev.accuracy})
    return rows


def _efficiency(rows: list[dict], rate: str) -> None:
    base = rows[0][rate]
    for r in rows:
        r["efficiency"] = r[rate] / base / r["workers"] if base else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 points, 4k samples")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    space = "weight_bits=4,6,lanes=1,4" if args.quick else "weight_bits=3..6,lanes=1,4,steps=8,16"
    samples = 4000 if args.quick else 50_000
    with tempfile.TemporaryDirectory(prefix="npuc-bench-explore-") as d:
        tmp = Path(d)
        ex = bench_explore(space, args.workers, tmp)
        for r in ex[1:]:  # every runner measured the same points
            same = [{k: v for k, v in a.items() if k != "seconds"} for a in r["_rows"]] == \
                   [{k: v for k, v in a.items() if k != "seconds"} for a in ex[0]["_rows"]]
            r["same rows"] = same
        ex[0]["same rows"] = True
        _efficiency(ex, "points/min")
        Table(f"explore: digits MLP on fpga, '{space}' {machine()}, load {os.getloadavg()[0]:.1f}",
              ["runner", "workers", "points", "seconds", "points/min", "efficiency", "same rows"]).print(ex)
        build = tmp / ex[0]["runner"].replace(" ", "_").replace(",", "") / "best-accuracy"
        ev = bench_evaluate(build, samples, args.workers)
        _efficiency(ev, "samples/s")
        Table(f"evaluate: best build, {samples:,} samples, chunks of 1024 {machine()}, load "
              f"{os.getloadavg()[0]:.1f}",
              ["runner", "workers", "samples", "seconds", "samples/s", "efficiency", "accuracy"]).print(ev)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
