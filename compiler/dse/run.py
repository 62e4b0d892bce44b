"""``npuc explore``: compile a model at many design points, measure each, keep the Pareto front.

`explore` loads the model once, shares the float graph and the data with the workers,
asks the search strategy for batches of points, runs each batch on the runner (cached
points are read back instead), and writes ``explore.csv``, ``explore.json``,
``pareto.png`` and one build directory per objective (``best-<objective>/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UserError
from .cache import PointCache, fingerprint
from .point import PointOptions, run_point
from .runner import Runner
from .search import make_strategy
from .space import Space, parse_space

FPGA_COSTS = {True: ["LUT", "latency_us"], False: ["memory_bits", "latency_us"]}
LOIHI2_COSTS = ["cores", "energy_uj"]


@dataclass
class ExploreResult:
    """Every measured row (in proposal order), the front, the best build per objective."""

    rows: list[dict[str, Any]]
    costs: list[str]
    front: list[int]
    best: dict[str, Path] = field(default_factory=dict)
    out: Path | None = None
    seconds: float = 0.0
    measured: int = 0  # points computed in this run (the rest came from the cache)
    runner: str = ""
    space: Space | None = None


def cost_columns(kind: str, synth: bool) -> list[str]:
    """The costs a target kind is judged on (each minimized; accuracy is maximized)."""
    return list(FPGA_COSTS[synth]) if kind == "fpga" else list(LOIHI2_COSTS) if kind == "loihi2" else []


def explore(model: Any, data: Any, labels: Any, target: str, space: str, out: str | Path, *,
            checkpoint: str | None = None, trust_checkpoint: bool = False, steps: int | None = None,
            search: str = "grid", budget: int | None = None, seed: int = 0, scheduler: str | None = None,
            workers: int | None = None, synth: str | None = None, calibration: int = 256,
            calibration_data: Any = None, calibration_labels: Any = None, chunk: int = 512,
            min_accuracy: float | None = None, progress: bool = True, echo: Any = None) -> ExploreResult:
    """Explore a design space for one model and target (see ``npuc explore --help``).

    Args:
        model: ``file.py:factory`` / ``pkg.mod:factory`` (with ``checkpoint``), ``.nir``,
            ``.onnx``, an ``nn.Module`` or an npuc `Graph`.
        data, labels: the labelled data set (arrays or ``.npy`` paths); every point's accuracy
            is measured on all of it with the integer engine; the first ``calibration``
            samples calibrate quantization (of ``calibration_data`` / ``calibration_labels``
            when given, else of ``data``; keep the data set held out by giving them).
        target: ``fpga``, ``loihi2``, ``fpga:clock_mhz=200`` or a target JSON file.
        space: knob text, e.g. ``"weight_bits=4..8,lanes=1,2,4,steps=8,16"``.
        search: ``grid``, ``random`` or ``nsga`` (``budget`` points).
        scheduler: None (local processes), ``local:N`` or ``tcp://HOST:PORT`` (Dask).
        synth: Yosys flow for FPGA LUT/FF/BRAM (``ice40``, ``xilinx``, ``generic``), ``ecp5``
            (Yosys + nextpnr place and route: Fmax too) or None.
        min_accuracy: accuracy floor for the cheapest builds (default: best accuracy - 0.01).

    Raises:
        NpucError: bad model, data, target or space (one line); refused points are rows.
    """
    t0 = time.perf_counter()
    echo = echo or (lambda line: None)
    sp = parse_space(space, target)
    x, y = _data(data, labels)
    if (calibration_data is None) != (calibration_labels is None):
        raise UserError("give calibration data and calibration labels together (--calibration, --calibration-labels)")
    cal = (x, y) if calibration_data is None else _data(calibration_data, calibration_labels)
    graph = _load(model, checkpoint, trust_checkpoint, steps, cal[0])
    opts = PointOptions(synth=synth, calibration=calibration, chunk=chunk)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    source = fingerprint(graph, x, y) + ("" if calibration_data is None else fingerprint(graph, *cal))
    cache = PointCache(root / "cache", source, target, opts)
    costs = cost_columns(sp.kind, synth is not None)
    strategy = make_strategy(search, sp, budget, seed, 1 + len(costs))
    total = len(strategy.points) if strategy.points else getattr(strategy, "budget", sp.size)
    echo(f"explore: {sp.size} points in the space ({', '.join(f'{k}: {len(v)}' for k, v in sp.knobs.items())}); "
         f"{search} search over {total}")
    rows: list[dict[str, Any]] = []
    measured = 0
    with Runner(scheduler, workers) as runner, _progress(total, progress) as bar:
        echo(f"explore: running on {runner.description}")
        shared = runner.share(graph=graph, x=x, y=y, cal=(cal[0][:calibration], cal[1][:calibration]))
        for batch in strategy.batches():
            got, n = _run_batch(runner, shared, cache, sp, batch, opts, bar)
            measured += n
            rows += got
            strategy.tell([(p, _objective(r, costs)) for p, r in zip(batch, got)])
        desc = runner.description
    from .outputs import write_outputs

    result = ExploreResult(rows, costs, [], out=root, measured=measured, runner=desc, space=sp)
    write_outputs(result, cache, model if isinstance(model, str) else type(model).__name__, search, min_accuracy)
    result.seconds = round(time.perf_counter() - t0, 2)
    return result


def _run_batch(runner: Runner, shared: dict[str, Any], cache: PointCache, sp: Space, batch: list[dict[str, str]],
               opts: PointOptions, bar: Any) -> tuple[list[dict[str, Any]], int]:
    """Rows of a batch in batch order: cached ones read back, the others measured in parallel."""
    rows: list[dict[str, Any] | None] = [cache.get(p) for p in batch]
    for r in rows:
        if r is not None:
            bar.update(1)
    known = cache.synth()
    todo = {runner.submit(run_point, shared["graph"], shared["x"], shared["y"], shared["cal"], sp, p, opts, known): i
            for i, p in enumerate(batch) if rows[i] is None}
    for fut in runner.as_completed(todo):
        i = todo[fut]
        res = runner.result(fut)
        row = {"id": cache.key(batch[i]), **res["row"]}
        cache.add_synth(res["synth"])
        cache.put(batch[i], row, res["build"])
        rows[i] = row
        bar.update(1)
    return [r for r in rows if r is not None], len(todo)


def _objective(row: dict[str, Any], costs: list[str]) -> list[float] | None:
    if row.get("accuracy") is None or any(row.get(c) is None for c in costs):
        return None
    return [-float(row["accuracy"]), *(float(row[c]) for c in costs)]


def _data(data: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    from ..inputs import as_arrays, load_inputs, load_labels

    x = load_inputs(str(data))[0] if isinstance(data, (str, Path)) else as_arrays(data, "data")[0]
    if isinstance(labels, (str, Path)):
        y = load_labels(str(labels), None)
    else:
        y = np.asarray(labels)
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != x.shape[0] and not (x.ndim > 2 and y.shape[0] == x.shape[1]):
        raise InputError(f"labels: {y.shape[0]} labels for {x.shape[0]} samples of data")
    return x, y.astype(np.int64)


def _load(model: Any, checkpoint: str | None, trust: bool, steps: int | None, x: np.ndarray) -> Any:
    from ..ir import Graph

    if isinstance(model, Graph):
        return model.verify()
    if isinstance(model, (str, Path)):
        from ..driver import load_source

        return load_source(str(model), checkpoint, [x[:64]], trust, steps)
    from ..frontends import trace

    return trace(model, x[:64], steps=steps)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="point", desc="explore", dynamic_ncols=True)
