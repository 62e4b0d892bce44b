"""One design point on a worker: compile, measure accuracy on the whole labelled data set, cost.

`run_point` is what the runner ships to workers. It takes everything by value (the float
graph, the data, the space) and returns plain data: the point's row, its build as bundle
bytes and any new Yosys results. A point the target refuses (a pass or backend error,
an option out of range) becomes a row with ``status = "refused: <reason>"``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NpucError
from .space import Space, point_spec


@dataclass(frozen=True)
class PointOptions:
    """How points are measured (part of every point's cache key)."""

    synth: str | None = None  # Yosys flow for LUT/FF/BRAM, None: no synthesis
    calibration: int = 256  # calibration samples (the first ones of the calibration set)
    chunk: int = 512  # integer-engine batch per chunk
    keep_build: bool = True  # return the build bundle (for best-<objective>/)


def run_point(graph: Any, x: np.ndarray, y: np.ndarray, cal: tuple[np.ndarray, np.ndarray], space: Space,
              point: dict[str, str], opts: PointOptions, known_synth: dict[str, Any]) -> dict[str, Any]:
    """Compile and measure one point; returns ``{"row", "build", "synth"}``; never raises."""
    row: dict[str, Any] = {**point, "status": "ok"}
    tmp = Path(tempfile.mkdtemp(prefix="npuc-point-"))
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = _measure(graph, x, y, cal, space, point, opts, known_synth, tmp / "build", row)
        row["warnings"] = sorted({str(w.message).splitlines()[0] for w in caught})
    except NpucError as e:
        row["status"] = f"refused: {str(e).splitlines()[0]}"
        out = {"build": None, "synth": {}}
    except Exception as e:  # a bug at one point must not end a long run; the row names it
        row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        out = {"build": None, "synth": {}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return {"row": row, **out}


def _measure(graph: Any, x: np.ndarray, y: np.ndarray, cal: tuple[np.ndarray, np.ndarray], space: Space,
             point: dict[str, str], opts: PointOptions, known_synth: dict[str, Any], build: Path,
             row: dict[str, Any]) -> dict[str, Any]:
    from ..builddir import BuildDir
    from ..driver import build as compile_build
    from . import bundle, costs
    from .measure import run_chunked

    spec, pipeline, steps = point_spec(space, point)
    g = _with_steps(graph, steps)
    report = compile_build(g, [spec], build, [cal[0][: opts.calibration]], cal[1][: opts.calibration],
                           pipelines={None: pipeline} if pipeline else None)
    name = next(iter(report["targets"]))
    quant = next((e for e in report["targets"][name]["passes"] if e["pass"] == "quantize"), {})
    agree = quant.get("spike_agreement") or {}
    row.update({"spec": spec, "num_steps": g.num_steps,
                "agreement_mean": round(float(np.mean(list(agree.values()))), 5) if agree else None,
                "agreement_min": round(min(agree.values()), 5) if agree else None,
                "agreement": agree})
    qgraph = BuildDir(build).int_graph(name)
    tally = run_chunked(qgraph, x, "int", opts.chunk, events=space.kind == "fpga")
    classes = int(np.prod(qgraph.outputs()[0].shape))
    row["accuracy"] = round(float(np.mean(tally.prediction() == y.reshape(-1))), 5) if classes else None
    row["spike_rates"] = tally.rates()
    new: dict[str, Any] = {}
    if space.kind == "fpga":
        cost, new = costs.fpga_costs(build, name, tally.event_arrays(), g.num_steps or 1, opts.synth, known_synth)
        row.update(cost)
    elif space.kind == "loihi2":
        row.update(costs.loihi2_costs(build, name))
    return {"build": bundle.pack(build) if opts.keep_build else None, "synth": new}


def _with_steps(graph: Any, steps: int | None) -> Any:
    from ..errors import UserError

    if steps is None or steps == graph.num_steps:
        return graph
    if any(n.op.layout != "B" for n in graph.inputs()):
        raise UserError(f"steps={steps}: graph '{graph.name}' takes inputs with a time axis; its steps come "
                        "from the data, not from the space")
    g = graph.copy()
    g.num_steps = steps
    return g.verify()
