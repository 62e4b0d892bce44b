"""The compiler driver (``npuc compile``): model -> float graph -> per-target pipelines -> artifacts.

Everything is written to a temporary sibling directory and renamed into place
at the end, so a failed compile never leaves half-written output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .builddir import display_path, resolve_output, write_build
from .errors import UserError


def load_source(model: str, checkpoint: str | None, example_input: list[np.ndarray] | None,
                trust_checkpoint: bool = False, steps: int | None = None, *, dt: float | None = None,
                reset: str | None = None, ann: bool = False, calibration: list[np.ndarray] | None = None):
    """Import a model spec (``file.py:factory``, ``pkg.mod:factory``, ``.nir``, ``.onnx``) as a float graph
    (``dt``, ``reset``: ``.nir`` only)."""
    from .frontends import load_model

    return load_model(model, checkpoint=checkpoint, example_input=example_input,
                      trust_checkpoint=trust_checkpoint, steps=steps, dt=dt, reset=reset, ann=ann,
                      calibration=calibration)


def build(graph, specs: list[str], out: Path, calibration: list[np.ndarray] | None, labels: np.ndarray | None,
          allow_approx: bool = False, echo=None, verbose=None, source: str = "python",
          pipelines: dict[str | None, str] | None = None, ann_sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a build directory for ``graph`` and every target spec; return the report.

    ``ann_sweep`` (`npuc.frontends.ann.accuracy_vs_steps`) goes into the report as
    ``ann_to_snn``, with each target's integer accuracy at T, and is drawn as
    ``report/ann_to_snn.png``.

    The directory is assembled in a temporary sibling and put in place by
    `npuc.builddir.write_build`: a failure leaves no half-written output, an existing
    build is replaced only on success, and nothing that is not an npuc build is replaced.
    """
    from .pipeline import compile_target

    echo = echo or (lambda line: None)
    if specs and calibration is None:
        raise UserError("compiling for a target needs an example input (or calibration data) to calibrate quantization")
    if specs and not any(n.op.has_role("population") and n.op.kind != "io" for n in graph):
        raise UserError(f"graph '{graph.name}' has no spiking neurons (an ANN?): convert a ReLU network with "
                        "--ann-to-snn --steps T (Python: ann_to_snn=True, steps=T)")
    for node, x in zip(graph.inputs(), calibration or []):
        if specs and node.op.layout == "TB" and np.ndim(x) == len(node.op.shape) + 1:
            raise UserError(
                f"'{graph.name}' takes one time step per call, so it runs on [T, B, ...] inputs and the "
                f"[B, ...] example cannot calibrate it: give the number of steps (--steps T / steps=T) to "
                f"repeat the example over T steps, or calibration data shaped [T, B, "
                f"{', '.join(map(str, node.op.shape))}] (--calibration / calibration=)")
    if labels is not None:
        from .inputs import check_labels

        classes = int(np.prod(graph.outputs()[0].shape))
        labels = check_labels(labels, None, "labels", classes=classes)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"npuc": __version__, "model": source, "graph": graph.name, "targets": {}}

    def fill(tmp: Path) -> dict[str, Any]:
        graph.save(tmp / "graph")
        targets, names = {}, []
        for spec in specs:
            name = spec.partition(":")[0]
            pipeline = (pipelines or {}).get(name, (pipelines or {}).get(None))
            name, treport = compile_target(graph, spec, tmp, calibration, labels, allow_approx, verbose, echo,
                                           pipeline)
            names.append(name)
            targets[name] = spec
            report["targets"][name] = treport
        if ann_sweep is not None:
            from .plots import plot_ann_vs_snn

            report["ann_to_snn"] = {**ann_sweep, "int_accuracy": {
                n: next((e["accuracy_int"] for e in t.get("passes", []) if "accuracy_int" in e), None)
                for n, t in report["targets"].items()}}
            png = plot_ann_vs_snn(report["ann_to_snn"], tmp / "report" / "ann_to_snn.png", graph.name)
            report["ann_to_snn"]["plot"] = str(png.relative_to(tmp))
        report["compile_seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
        return {"npuc": __version__, "model": source, "graph": graph.name, "num_steps": graph.num_steps,
                "targets": names, "specs": targets}

    write_build(out, fill, echo)
    return report


def compile_cli(args: argparse.Namespace) -> int:
    from .inputs import load_inputs

    def echo(line: str) -> None:
        print(line, file=sys.stderr)

    resolve_output(args.out)  # a bad --out fails before the (slow) import, and again when writing
    xs = load_inputs(args.example_input) if args.example_input else None
    calib = load_inputs(args.calibration) if args.calibration else xs
    t0 = time.perf_counter()
    ann = getattr(args, "ann_to_snn", False)
    graph = load_source(args.model, args.checkpoint, xs, args.trust_checkpoint, args.steps,
                        dt=getattr(args, "dt", None), reset=getattr(args, "reset", None), ann=ann, calibration=calib)
    echo(f"{'converted the ReLU network' if ann else 'imported'} '{args.model}' as graph '{graph.name}': "
         f"{len(graph)} nodes, T={graph.num_steps} ({time.perf_counter() - t0:.2f} s)")
    labels = None
    if args.labels:
        from .inputs import batch_size, load_labels

        labels = load_labels(args.labels, batch_size(graph, calib) if calib else None)
    if getattr(args, "stock_only", False):
        args.target = [stock_only_spec(t) for t in args.target]
    sweep = None
    if ann and labels is not None:
        from .frontends import load_ann
        from .frontends.ann import accuracy_vs_steps

        sweep = accuracy_vs_steps(load_ann(args.model, args.checkpoint, args.trust_checkpoint), calib[0], calib[0],
                                  labels, graph.num_steps)
        echo(f"ANN accuracy {sweep['ann_accuracy']:.4f}; SNN (float) "
             + ", ".join(f"T={r['steps']}: {r['accuracy']:.4f}" for r in sweep["snn"]))
    build(graph, args.target, Path(args.out), calib, labels, args.allow_approx, echo,
          echo if args.verbose else None, args.model, parse_pipeline_args(args.pipeline, args.target), sweep)
    echo(f"wrote {display_path(resolve_output(args.out))} ({', '.join(['graph'] + [s.partition(':')[0] for s in args.target])}) "
         f"in {time.perf_counter() - t0:.2f} s")
    return 0


def stock_only_spec(spec: str) -> str:
    """``--stock-only``: add ``stock_only=1`` to a loihi2 target spec (other kinds are unchanged)."""
    from .targets import load_target

    if load_target(spec).kind != "loihi2" or "stock_only" in spec.partition(":")[2]:
        return spec
    name, _, over = spec.partition(":")
    return f"{name}:{over + ',' if over else ''}stock_only=1"


def parse_pipeline_args(items: list[str] | None, specs: list[str]) -> dict[str | None, str]:
    """``--pipeline TEXT`` (every target) or ``--pipeline TARGET=TEXT`` (one target), repeatable."""
    names = [s.partition(":")[0] for s in specs]
    out: dict[str | None, str] = {}
    for item in items or []:
        head, eq, rest = item.partition("=")
        key = head.strip() if eq and head.strip() in names else None
        text = rest if key is not None else item
        if key in out:
            raise UserError(f"--pipeline given twice for {'target ' + repr(key) if key else 'all targets'}")
        out[key] = text
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
