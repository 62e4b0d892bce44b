"""``npuc compile``: model -> float graph -> per-target pipelines -> hardware artifacts.

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


def load_source(model: str, checkpoint: str | None, example_input: list[np.ndarray] | None,
                trust_checkpoint: bool = False, steps: int | None = None):
    """Import a model spec (``file.py:factory``, ``pkg.mod:factory``, ``.nir``, ``.onnx``) as a float graph."""
    from ..frontends import load_model

    return load_model(model, checkpoint=checkpoint, example_input=example_input,
                      trust_checkpoint=trust_checkpoint, steps=steps)


def compile_cli(args: argparse.Namespace) -> int:
    from .cli import UserError, load_inputs


    def echo(line: str) -> None:
        print(line, file=sys.stderr)

    xs = load_inputs(args.example_input) if args.example_input else None
    t0 = time.perf_counter()
    graph = load_source(args.model, args.checkpoint, xs, args.trust_checkpoint, args.steps)
    echo(f"imported '{args.model}' as graph '{graph.name}': {len(graph)} nodes, T={graph.num_steps} "
         f"({time.perf_counter() - t0:.2f} s)")
    calib = load_inputs(args.calibration) if args.calibration else xs
    labels = np.load(args.labels, allow_pickle=False) if args.labels else None
    if args.target and calib is None:
        raise UserError("compiling for a target needs --example-input (or --calibration) to calibrate quantization")
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix=".npuc-build-", dir=out.parent if out.parent.exists() else None))
    try:
        graph.save(tmp / "graph")
        report: dict[str, Any] = {"npuc": __version__, "model": args.model, "graph": graph.name, "targets": {}}
        targets, specs = [], {}
        for spec in args.target:
            from .pipeline import compile_target

            name, treport = compile_target(graph, spec, tmp, calib, labels, args.allow_approx, echo if args.verbose else None, echo)
            targets.append(name)
            specs[name] = spec
            report["targets"][name] = treport
        manifest = {"npuc": __version__, "model": args.model, "checkpoint": args.checkpoint,
                    "graph": graph.name, "num_steps": graph.num_steps, "targets": targets, "specs": specs}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
        if out.exists():
            if not (out / MANIFEST).is_file() and any(out.iterdir()):
                raise UserError(f"{out} exists and is not an npuc build directory; refusing to overwrite it")
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    echo(f"wrote {out}/ ({', '.join(['graph'] + targets)}) in {time.perf_counter() - t0:.2f} s")
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
