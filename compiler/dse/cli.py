"""The ``explore`` and ``evaluate`` verbs (registered by `npuc.cli` with `add_parsers`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

SCHEDULER = ("where points (and evaluate's chunks) run: default local worker processes, one per core; "
             "local:N starts a dask.distributed LocalCluster of N worker processes; tcp://HOST:PORT uses "
             "an existing Dask scheduler (workers need npuc installed)")


def cmd_explore(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .outputs import print_front
    from .run import explore

    def echo(line: str) -> None:
        print(line, file=sys.stderr)

    res = explore(args.model, args.data, args.labels, args.target, args.space, args.out,
                  checkpoint=args.checkpoint, trust_checkpoint=args.trust_checkpoint, steps=args.steps,
                  search=args.search, budget=args.budget, seed=args.seed, scheduler=args.scheduler,
                  workers=args.workers, synth=None if args.synth == "none" else args.synth,
                  calibration=args.calibration_samples, calibration_data=args.calibration,
                  calibration_labels=args.calibration_labels, chunk=args.chunk, min_accuracy=args.min_accuracy,
                  progress=not args.no_progress, echo=echo)
    print_front(res, Console(stderr=False))
    ok = sum(r["status"] == "ok" for r in res.rows)
    echo(f"explore: {len(res.rows)} points ({ok} ok, {len(res.rows) - ok} refused; {res.measured} measured, "
         f"{len(res.rows) - res.measured} from the cache) in {res.seconds:.1f} s on {res.runner}; wrote "
         f"{res.out}/explore.csv, explore.json" + (", pareto.png" if (res.out / "pareto.png").exists() else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .evaluate import evaluate

    ev = evaluate(args.dir, args.data, args.labels, engine=args.engine, target=args.target, chunk=args.chunk,
                  scheduler=args.scheduler, workers=args.workers, out=args.out)
    t = Table(title=f"{args.dir}: {args.engine} engine, {ev.samples} samples, accuracy {ev.accuracy:.4f}")
    t.add_column("layer")
    t.add_column("spikes / neuron / step", justify="right")
    for layer, rate in ev.spike_rates.items():
        t.add_row(layer, f"{rate:.4f}")
    Console().print(t)
    print(f"evaluate: {ev.samples} samples in {ev.seconds:.2f} s ({ev.samples_per_second:.0f} samples/s) on "
          f"{ev.runner}; wrote {ev.report} and {ev.plot}", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    e = sub.add_parser("explore", help="compile a model at many design points and keep the Pareto front",
                       description="Compile a model for every point of a design space (grid, random sample "
                       "or NSGA-II), measure integer-engine accuracy on a labelled data set and the hardware "
                       "cost of each point, and write explore.csv/json, pareto.png and best-<objective>/ "
                       "builds. Interrupted runs resume from DIR/cache/.")
    e.add_argument("model", help="file.py:factory, package.module:factory, a .nir or an .onnx file")
    e.add_argument("--checkpoint", help="state_dict checkpoint (.pt) loaded with torch.load(weights_only=True)")
    e.add_argument("--trust-checkpoint", action="store_true", help="allow a checkpoint that needs pickled classes")
    e.add_argument("--steps", type=int, help="time steps for a model whose forward takes no time axis")
    e.add_argument("--data", required=True, help=".npy inputs (the model's input layout); all are evaluated")
    e.add_argument("--labels", required=True, help=".npy class labels for --data")
    e.add_argument("--target", required=True, help="fpga, loihi2, KIND:option=value,... or a target JSON file")
    e.add_argument("--space", required=True,
                   help="knobs and values, e.g. 'weight_bits=4..8,state_bits=10..16,lanes=1,2,4,8,steps=8,16,32' "
                   "(target overrides, steps, PASS.OPTION such as quantize.percentile; LO..HI[/STEP] ranges)")
    e.add_argument("--search", choices=("grid", "random", "nsga"), default="grid",
                   help="every point (default), a seeded random sample, or Optuna NSGA-II (both need --budget)")
    e.add_argument("--budget", type=int, help="number of points to evaluate")
    e.add_argument("--seed", type=int, default=0, help="seed of the random and NSGA-II searches")
    e.add_argument("--synth", choices=("none", "ice40", "xilinx", "generic", "ecp5"), default="none",
                   help="FPGA: Yosys flow for LUT/FF/BRAM per point, or ecp5: Yosys + nextpnr place and route "
                   "(Fmax, latency at Fmax); cached per design; default none: memory bits")
    e.add_argument("--min-accuracy", type=float,
                   help="accuracy floor for best-<cost>/ builds (default: best accuracy - 0.01)")
    e.add_argument("--calibration", help=".npy calibration inputs (default: --data)")
    e.add_argument("--calibration-labels", help=".npy labels of --calibration")
    e.add_argument("--calibration-samples", type=int, default=256,
                   help="the first N calibration samples calibrate quantization (default 256)")
    e.add_argument("--chunk", type=int, default=512, help="integer-engine samples per batch")
    e.add_argument("--scheduler", help=SCHEDULER)
    e.add_argument("--workers", type=int, help="local worker processes (default: one per core; 0: run in this process)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--out", required=True, help="output directory (its cache/ makes reruns resume)")
    e.set_defaults(fn=cmd_explore)

    v = sub.add_parser("evaluate", help="accuracy, confusion matrix and spike rates of a build on a data set",
                       description="Run a build's golden engine over a labelled data set in chunks, on local "
                       "worker processes or a Dask cluster; writes DIR/report/evaluate_*.json and a "
                       "confusion-matrix PNG.")
    v.add_argument("dir", help="build directory")
    v.add_argument("--data", required=True, help=".npy inputs")
    v.add_argument("--labels", required=True, help=".npy class labels")
    v.add_argument("--engine", choices=("int", "float"), default="int")
    v.add_argument("--target", help="which compiled target (when there are several)")
    v.add_argument("--chunk", type=int, default=512, help="samples per task")
    v.add_argument("--scheduler", help=SCHEDULER)
    v.add_argument("--workers", type=int, help="local worker processes (default: one per core; 0: run in this process)")
    v.add_argument("--out", help="folder for the JSON and the plot (default DIR/report/)")
    v.set_defaults(fn=cmd_evaluate)
