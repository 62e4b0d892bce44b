"""Per-target compilation: the target's pass pipeline, then its backend's emitter.

`compile_target` resolves the target (`npuc.targets`), takes its pipeline (the
``--pipeline`` override, else the target file's ``pipeline``, else the default
of its backend, `npuc.backends.Backend.pipeline`), runs it on a copy of the
float graph, saves the quantized graph to ``DIR/<target>/``, emits the
backend's artifacts into ``DIR/<backend folder>/`` and returns the target's
section of ``report.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .backends import for_kind
from .errors import UserError
from .ir import Graph
from .passes.base import Pass, PassContext, parse_pipeline, pipeline_text, run_pipeline
from .targets import Target, load_target


def build_passes(kind: str, names: list[str] | None = None) -> list[Pass]:
    """The passes of a target kind's default pipeline (or the named subset of them)."""
    passes = parse_pipeline(for_kind(kind).pipeline)
    return [p for p in passes if names is None or p.name in names]


def target_passes(target: Target, pipeline: str | None = None) -> list[Pass]:
    """The passes compiling for ``target``: ``pipeline`` text, else the target's, else its backend's."""
    return parse_pipeline(pipeline or target.pipeline or for_kind(target.kind).pipeline)


def compile_target(graph: Graph, spec: str, out: Path, calibration: list[np.ndarray] | None,
                   labels: np.ndarray | None, allow_approx: bool, verbose: Callable[[str], None] | None,
                   echo: Callable[[str], None], pipeline: str | None = None) -> tuple[str, dict[str, Any]]:
    """Compile ``graph`` for one target spec into ``out`` (a build directory being written).

    Returns:
        ``(target name, report section)``.
    """
    target = load_target(spec)
    backend = for_kind(target.kind)
    passes = target_passes(target, pipeline)
    if (out / target.name).exists():
        raise UserError(f"target '{target.name}' given twice: compile variants into separate --out directories")
    if (out / backend.folder).exists():
        raise UserError(f"two targets of kind '{target.kind}' ('{target.name}' and another) would share the "
                        f"{backend.folder}/ folder: compile them into separate --out directories")
    ctx = PassContext(target=target, calibration=calibration, labels=labels, allow_approx=allow_approx,
                      echo=verbose, reference=graph)
    t0 = time.perf_counter()
    q = run_pipeline(graph, passes, ctx)
    q.save(out / target.name)
    report: dict[str, Any] = {"spec": spec, "kind": target.kind, "pipeline": pipeline_text(passes),
                              "passes": ctx.log, "warnings": ctx.warnings,
                              "compile_seconds": round(time.perf_counter() - t0, 3)}
    quant = next((e for e in ctx.log if e["pass"] == "quantize"), {})
    _echo_quant(echo, target.name, quant)
    for w in ctx.warnings:
        echo(f"  warning: {w}")
    files = backend.emit(q, out / backend.folder, target, version=__version__)
    report["artifacts"] = [str(Path(f).relative_to(out)) for f in files]
    section = getattr(backend.implementation(), "report_section", None)
    if section is not None:  # backend-specific report entries (e.g. Lava's custom processes)
        report.update(section(out / backend.folder))
    echo(f"  {target.name}: wrote {len(files)} files to {backend.folder}/")
    if "mapping" in q.meta:
        from .plots import plot_core_map
        from .report_mapping import mapping_report

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
    used, given = quant.get("calibration_samples"), quant.get("calibration_given")
    if used and given and given > used:
        line += f"; calibrated on the first {used} of {given} samples (quantize{{max_samples=N}} uses more)"
    events = quant.get("overflow_events", {})
    if events:
        line += "; overflow events: " + ", ".join(f"{n}: {sum(c.values())}" for n, c in events.items())
    echo(line)
