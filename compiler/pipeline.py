"""Per-target compilation: the named pass pipeline, then the backend emitter.

``PIPELINES[kind]`` lists the passes run for a target kind. `compile_target`
runs them on a copy of the float graph, saves the quantized graph to
``DIR/<target>/``, emits the backend's artifacts and returns the target's
section of ``report.json``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .ir import Graph
from .passes.base import PassContext, make_pass, run_pipeline
from .targets import load_target

# Where each pass is defined; importing the module registers it.
PASS_MODULES = {
    "fold-batchnorm": "fold", "fold-scale": "fold", "legalize": "legalize", "quantize": "quantize",
    "map-cores": "mapping", "place-cores": "placement",
}

PIPELINES: dict[str, list[str]] = {
    "loihi2": ["fold-batchnorm", "legalize", "quantize", "map-cores", "place-cores"],
    "fpga": ["fold-batchnorm", "legalize", "quantize"],
}
BACKEND_FOLDER = {"loihi2": ("lava", "npuc.backends.lava"), "fpga": ("rtl", "npuc.backends.rtl")}


def build_passes(kind: str, names: list[str] | None = None) -> list:
    """The passes of a target kind's pipeline (or the named subset), instantiated with defaults."""
    selected = [n for n in PIPELINES[kind] if names is None or n in names]
    for n in selected:
        importlib.import_module(f"{__package__}.passes.{PASS_MODULES[n]}")
    return [make_pass(n) for n in selected]


def compile_target(graph: Graph, spec: str, out: Path, calibration: list[np.ndarray] | None,
                   labels: np.ndarray | None, allow_approx: bool, verbose: Callable[[str], None] | None,
                   echo: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """Compile ``graph`` for one target spec into ``out`` (a build directory being written).

    Returns:
        ``(target name, report section)``.
    """
    target = load_target(spec)
    kind = target.kind
    ctx = PassContext(target=target, calibration=calibration, labels=labels, allow_approx=allow_approx,
                      echo=verbose, reference=graph)
    t0 = time.perf_counter()
    passes = build_passes(kind)
    q = run_pipeline(graph, passes, ctx)
    if (out / target.name).exists():
        raise UserError(f"target '{target.name}' given twice: compile variants into separate --out directories")
    q.save(out / target.name)
    report: dict[str, Any] = {"spec": spec, "passes": ctx.log, "warnings": ctx.warnings,
                              "compile_seconds": round(time.perf_counter() - t0, 3)}
    quant = next((e for e in ctx.log if e["pass"] == "quantize"), {})
    _echo_quant(echo, target.name, quant)
    for w in ctx.warnings:
        echo(f"  warning: {w}")
    folder, module = BACKEND_FOLDER[kind]
    try:
        backend = importlib.import_module(module)
        emit = backend.emit
    except (ImportError, AttributeError):
        echo(f"  {target.name}: the {folder} backend is not available yet; quantized graph written to {out / target.name}")
        report["artifacts"] = []
        return target.name, report
    files = emit(q, out / folder, target)
    report["artifacts"] = [str(Path(f).relative_to(out)) for f in files]
    echo(f"  {target.name}: wrote {len(files)} files to {folder}/")
    if "mapping" in q.meta:
        from .passes.mapping import mapping_report
        from .plots import plot_core_map

        report["mapping"] = mapping_report(q, target)
        png = plot_core_map(q, target, out / "report" / f"core_map_{target.name}.png")
        report["plots"] = [str(Path(png).relative_to(out))]
    return target.name, report


def _echo_quant(echo: Callable[[str], None], name: str, quant: dict[str, Any]) -> None:
    agree = quant.get("spike_agreement", {})
    if not agree:
        return
    worst = min(agree.items(), key=lambda kv: kv[1])
    line = f"  {name}: float-vs-int spike agreement {np.mean(list(agree.values())):.4f} (worst {worst[0]}: {worst[1]:.4f})"
    if "accuracy_float" in quant:
        line += f"; accuracy float {quant['accuracy_float']:.4f} int {quant['accuracy_int']:.4f}"
    events = quant.get("overflow_events", {})
    if events:
        line += "; overflow events: " + ", ".join(f"{n}: {sum(c.values())}" for n, c in events.items())
    echo(line)
