"""``npuc evaluate``: one build on a large labelled data set, chunked over the runner's workers.

The build travels to the workers as bundle bytes (each unpacks it once); each chunk of
samples returns its predictions and per-layer spike counts; the parts are summed here.
Writes ``DIR/report/evaluate_<target>_<engine>.json`` and a confusion-matrix PNG.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .measure import DEFAULT_CHUNK, Tally, confusion, run_chunk
from .runner import Runner


@dataclass
class Evaluation:
    accuracy: float | None
    samples: int
    confusion: np.ndarray
    spike_rates: dict[str, float]
    seconds: float
    report: Path
    plot: Path
    runner: str

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


def _chunk_task(build: bytes, target: str | None, engine: str, x: np.ndarray) -> Tally:
    from ..builddir import BuildDir
    from . import bundle

    bd = BuildDir(bundle.unpacked(build))
    graph = _graph(bd, target, engine)
    return run_chunk(graph, x, engine)


_GRAPHS: dict[tuple[str, str | None, str], Any] = {}


def _graph(bd: Any, target: str | None, engine: str) -> Any:
    key = (str(bd.path), target, engine)
    if key not in _GRAPHS:
        _GRAPHS[key] = bd.float_graph() if engine == "float" else bd.int_graph(target)
    return _GRAPHS[key]


def evaluate(build: str | Path, data: Any, labels: Any, engine: str = "int", target: str | None = None,
             chunk: int = DEFAULT_CHUNK, scheduler: str | None = None, workers: int | None = None,
             out: str | Path | None = None) -> Evaluation:
    """Accuracy, confusion matrix and spike rate per layer of a build on ``data``.

    Raises:
        NpucError: not a build, unknown target or engine, data or labels that do not fit.
    """
    from ..builddir import BuildDir
    from . import bundle
    from .plots import plot_confusion
    from .run import _data

    if engine not in ("int", "float"):
        raise UserError(f"--engine {engine!r}: evaluate runs the golden engines, int or float")
    if chunk < 1:
        raise UserError(f"--chunk must be at least 1, got {chunk}")
    bd = BuildDir(build)
    name = None if engine == "float" else bd.target_name(target)
    graph = _graph(bd, name, engine)
    x, y = _data(data, labels)
    tb = graph.inputs()[0].op.layout == "TB"
    n = x.shape[1] if tb else x.shape[0]
    t0 = time.perf_counter()
    total = Tally()
    with Runner(scheduler, workers) as runner:
        shared = runner.share(build=bundle.pack(bd.path))
        futs = [runner.submit(_chunk_task, shared["build"], name, engine, x[:, lo:lo + chunk] if tb else x[lo:lo + chunk])
                for lo in range(0, n, chunk)]
        parts = [runner.result(f) for f in futs]  # submission order: predictions stay aligned with labels
        desc = runner.description
    for p in parts:
        total.merge(p)
    seconds = time.perf_counter() - t0
    pred = total.prediction()
    classes = int(np.prod(graph.outputs()[0].shape))
    if y.max(initial=0) >= classes:
        raise UserError(f"labels: class {int(y.max())} but the model has {classes} outputs")
    acc = round(float(np.mean(pred == y)), 5)
    m = confusion(pred, y, classes)
    dest = Path(out) if out else bd.path / "report"
    tag = f"{name or 'float'}_{engine}"
    plot = plot_confusion(m, dest / f"confusion_{tag}.png",
                          f"{graph.name}, {engine} engine: accuracy {acc:.4f} on {n} samples")
    rates = total.rates()
    doc = {"build": str(bd.path), "target": name, "engine": engine, "samples": n, "accuracy": acc,
           "confusion": m.tolist(), "spike_rates": rates, "seconds": round(seconds, 3), "runner": desc,
           "chunk": chunk}
    report = dest / f"evaluate_{tag}.json"
    report.write_text(json.dumps(doc, indent=1) + "\n")
    return Evaluation(acc, n, m, rates, seconds, report, plot, desc)
