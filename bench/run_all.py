"""Run every benchmark (``make bench``); ``--quick`` runs the CI smoke versions.

Benchmarks are scripts that print tables stamped with the date and machine;
their measured figures are pasted into the README by hand, never asserted in
timed tests.
"""

from __future__ import annotations

import argparse
import importlib
import time

BENCHMARKS = [
    ("sim_speed", "1. simulation speed: golden engines vs Lava and PyTorch"),
    ("compile_scaling", "2. compile time vs network size"),
    ("mapping_bench", "3. mapping quality: messages, hop traffic, cores"),
    ("rtl_efficiency", "4. RTL efficiency: cycles vs bound, ecp5 place and route (Fmax, cells, BRAM) vs Spiker+"),
    ("accuracy", "5. accuracy per engine; int/Lava/RTL mismatches"),
    ("attention_bench", "6. spiking attention: AND vs XNOR vs SC; SC error vs T"),
    ("model_zoo", "7. model zoo: tutorial and reference models on both targets"),
    ("ann_to_snn", "8. ANN-to-SNN: ReLU networks on digits, accuracy vs T"),
    ("explore_bench", "9. explore / evaluate: points per minute, samples per second, local vs LocalCluster"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", help="benchmark module names to run")
    args = ap.parse_args(argv)
    for name, title in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        print(f"\n=== {title} ({name})", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"bench.{name}").main(["--quick"] if args.quick else [])
        print(f"=== {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
