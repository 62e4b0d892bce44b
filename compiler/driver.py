"""The compiler driver (``npuc compile``): model -> float graph -> per-target pipelines -> artifacts.

Everything is written to a temporary sibling directory and renamed into place
at the end, so a failed compile never leaves half-written output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .builddir import MANIFEST
from .errors import UserError


def load_source(model: str, checkpoint: str | None, example_input: list[np.ndarray] | None,
                trust_checkpoint: bool = False, steps: int | None = None):
    """Import a model spec (``file.py:factory``, ``pkg.mod:factory``, ``.nir``, ``.onnx``) as a float graph."""
    from .frontends import load_model

    return load_model(model, checkpoint=checkpoint, example_input=example_input,
                      trust_checkpoint=trust_checkpoint, steps=steps)


def build(graph, specs: list[str], out: Path, calibration: list[np.ndarray] | None, labels: np.ndarray | None,
          allow_approx: bool = False, echo=None, verbose=None, source: str = "python") -> dict[str, Any]:
    """Write a build directory for ``graph`` and every target spec; return the report.

    The directory is assembled in a temporary sibling and renamed into place, so
    a failure leaves no half-written output (an existing build is replaced only
    on success).
    """
    from .pipeline import compile_target

    echo = echo or (lambda line: None)
    if specs and calibration is None:
        raise UserError("compiling for a target needs an example input (or calibration data) to calibrate quantization")
    for node, x in zip(graph.inputs(), calibration or []):
        if specs and node.op.layout == "TB" and np.ndim(x) == len(node.op.shape) + 1:
            raise UserError(
                f"'{graph.name}' takes one time step per call, so it runs on [T, B, ...] inputs and the "
                f"[B, ...] example cannot calibrate it: give the number of steps (--steps T / steps=T) to "
                f"repeat the example over T steps, or calibration data shaped [T, B, "
                f"{', '.join(map(str, node.op.shape))}] (--calibration / calibration=)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory; choose another --out")
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not an npuc build directory; refusing to overwrite it")
    t0 = time.perf_counter()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".npuc-build-", dir=out.parent))
    except OSError as e:
        raise UserError(f"{out}: cannot create the build directory ({e.strerror or e})") from None
    try:
        graph.save(tmp / "graph")
        report: dict[str, Any] = {"npuc": __version__, "model": source, "graph": graph.name, "targets": {}}
        targets, names = {}, []
        for spec in specs:
            name, treport = compile_target(graph, spec, tmp, calibration, labels, allow_approx, verbose, echo)
            names.append(name)
            targets[name] = spec
            report["targets"][name] = treport
        manifest = {"npuc": __version__, "model": source, "graph": graph.name, "num_steps": graph.num_steps,
                    "targets": names, "specs": targets}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        report["compile_seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def compile_cli(args: argparse.Namespace) -> int:
    from .inputs import load_inputs

    def echo(line: str) -> None:
        print(line, file=sys.stderr)

    xs = load_inputs(args.example_input) if args.example_input else None
    t0 = time.perf_counter()
    graph = load_source(args.model, args.checkpoint, xs, args.trust_checkpoint, args.steps)
    echo(f"imported '{args.model}' as graph '{graph.name}': {len(graph)} nodes, T={graph.num_steps} "
         f"({time.perf_counter() - t0:.2f} s)")
    calib = load_inputs(args.calibration) if args.calibration else xs
    labels = None
    if args.labels:
        from .inputs import batch_size, load_labels

        labels = load_labels(args.labels, batch_size(graph, calib) if calib else None)
    build(graph, args.target, Path(args.out), calib, labels, args.allow_approx, echo,
          echo if args.verbose else None, args.model)
    echo(f"wrote {args.out}/ ({', '.join(['graph'] + [s.partition(':')[0] for s in args.target])}) "
         f"in {time.perf_counter() - t0:.2f} s")
    return 0


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
