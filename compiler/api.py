"""The Python API: ``npuc.compile(model, example_input, target=...)``.

Example::

    import npuc
    hw = npuc.compile(model, x, target=["loihi2", "fpga"])
    hw.simulate(x, engine="int")          # golden integer engine, [T, B, ...] like model(x)
    hw.verify(x, engine="lava")           # Lava fixed_pt vs the integer engine; .ok, .format()
    hw.report()                           # the build's report.json as a dict
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .builddir import BuildDir
from .errors import UserError
from .ir import Graph


class Compiled:
    """A compiled model: the float graph, one quantized graph per target, and its build directory."""

    def __init__(self, path: str | Path, temporary: bool = False) -> None:
        self.path = Path(path)
        self._bd = BuildDir(self.path)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.path.parent, True) if temporary else None

    def save(self, out: str | Path) -> Compiled:
        """Copy the build to ``out`` (a new directory, or an earlier npuc build it replaces)
        and return it there; use it to keep a build compiled without ``out=``."""
        from .builddir import write_build

        def fill(tmp: Path) -> dict[str, Any]:
            for entry in self.path.iterdir():
                if entry.name != "manifest.json":
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
            return {k: v for k, v in self._bd.manifest.items() if k not in ("format", "format_version", "files")}

        return Compiled(write_build(out, fill))

    @property
    def graph(self) -> Graph:
        """The float graph (source semantics)."""
        return self._bd.float_graph()

    @property
    def targets(self) -> list[str]:
        return self._bd.targets

    def quantized(self, target: str | None = None) -> Graph:
        """The quantized graph of a target (optional when there is one target)."""
        return self._bd.int_graph(target)

    def simulate(self, x: Any, engine: str = "float", target: str | None = None, probe: bool = False,
                 allow_modified: bool = False) -> Any:
        """Run an engine on ``x`` (what the model's forward takes).

        Args:
            engine: ``float``, ``int`` (golden), ``lava`` or ``rtl`` (hardware engines).
            target: which compiled target for ``int`` when there are several.
            probe: return the full `SimResult` (outputs, per-node traces, counters)
                instead of just the output array(s).
            allow_modified: run a build whose generated files changed since compile (the
                hardware engines execute them; see `npuc.builddir`).
        """
        from .backends import engines, for_engine, run_engine
        from .sim import simulate

        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if engine in ("float", "int"):
            g = self.graph if engine == "float" else self.quantized(target)
            res = simulate(g, xs if len(xs) > 1 else xs[0], engine, probe=probe)
        elif engine in engines():
            target = target or self._bd.target_for_kind(for_engine(engine).kind)
            res = run_engine(self._bd, engine, [np.asarray(v) for v in xs], target=target, probe=probe,
                             allow_modified=allow_modified)
        else:
            raise UserError(f"unknown engine {engine!r}; choose from {['float', 'int', *engines()]}")
        if probe:
            return res
        return res.outputs[0] if len(res.outputs) == 1 else tuple(res.outputs)

    def verify(self, x: Any, engine: str = "lava", target: str | None = None, allow_modified: bool = False):
        """Compare a hardware engine with the golden integer engine (`npuc.sim.compare.Comparison`)."""
        from .verify import verify

        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        result, _, _ = verify(self._bd, engine, [np.asarray(v) for v in xs], target, allow_modified=allow_modified)
        return result

    def report(self) -> dict[str, Any]:
        """The build's report (passes, quantization error, mapping, resources)."""
        return json.loads((self.path / "report.json").read_text())

    def __repr__(self) -> str:
        return f"Compiled({str(self.path)!r}, targets={self.targets})"


def compile(  # noqa: A001  (the package's verb)
    model: Any,
    example_input: Any,
    target: str | Sequence[str] = (),
    out: str | Path | None = None,
    calibration: Any = None,
    labels: Any = None,
    steps: int | None = None,
    allow_approx: bool = False,
    verbose: bool = False,
    name: str | None = None,
    pipeline: str | dict[str, str] | None = None,
    ann_to_snn: bool = False,
) -> Compiled:
    """Compile a PyTorch model (or an npuc `Graph`) for hardware targets.

    Args:
        model: an ``nn.Module`` (traced with `npuc.frontends.trace`) or a `Graph`.
        example_input: what ``model(x)`` takes (numpy or torch; a tuple for several inputs).
        target: ``"loihi2"``, ``"fpga"``, ``"fpga:weight_bits=6,..."`` or a list of them.
        out: build directory. Default: a temporary directory that is removed when the
            returned `Compiled` is garbage-collected or the interpreter exits (pass ``out``
            to keep the build, or call `Compiled.save`).
        calibration: inputs for quantization (default: ``example_input``).
        labels: labels for the calibration inputs (reports accuracy).
        steps: time steps for a model whose forward has no time axis.
        allow_approx: approximate target-missing neuron features instead of failing.
        verbose: print each pass.
        name: graph name (default: `npuc.frontends.graph_name`, the rule the CLI uses too).
        pipeline: pass pipeline text for every target, or ``{target name: text}``
            (default: each target's own; see `npuc.passes.base.parse_pipeline`).
        ann_to_snn: ``model`` is a ReLU network: convert it over ``steps`` time steps with
            thresholds balanced on the calibration data (`npuc.frontends.ann.ann_to_snn`). With
            ``labels``, the report compares the ANN's accuracy with the SNN's at T/4..2T
            (``report.json`` ``ann_to_snn``, plot ``report/ann_to_snn.png``).

    Returns:
        `Compiled`, backed by the build directory.

    Raises:
        NpucError: the same one-line errors the CLI prints (bad inputs, labels, layers, targets).
    """
    from .driver import build
    from .inputs import as_arrays, batch_size, check_labels

    xs = as_arrays(example_input, "example_input", finite=not isinstance(model, Graph))
    if isinstance(model, Graph):
        graph = model.verify()
    elif ann_to_snn:
        from .frontends.ann import ann_to_snn as convert_ann

        cal = xs if calibration is None else as_arrays(calibration, "calibration")
        graph = convert_ann(model, cal[0], steps, name=name)
    else:
        from .frontends import trace

        graph = trace(model, xs if len(xs) > 1 else xs[0], steps=steps, name=name)
    specs = [target] if isinstance(target, str) else list(target)
    calib = xs if calibration is None else as_arrays(calibration, "calibration", finite=not isinstance(model, Graph))
    y = None if labels is None else check_labels(labels, batch_size(graph, calib), "labels")
    temporary = out is None
    path = Path(tempfile.mkdtemp(prefix="npuc-")) / "build" if temporary else Path(out)

    def echo(line: str) -> None:
        print(line)

    sweep = None
    if ann_to_snn and y is not None and not isinstance(model, Graph):
        from .frontends.ann import accuracy_vs_steps

        sweep = accuracy_vs_steps(model, calib[0], calib[0], y, graph.num_steps)
    try:
        build(graph, specs, path, calib, y, allow_approx, echo if verbose else None, echo if verbose else None,
              type(model).__name__, pipeline if isinstance(pipeline, dict) else {None: pipeline} if pipeline else None,
              sweep)
    except BaseException:
        if temporary:
            shutil.rmtree(path.parent, ignore_errors=True)
        raise
    return Compiled(path, temporary=temporary)


def load(path: str | Path) -> Compiled:
    """Open an existing build directory (from ``npuc compile --out DIR`` or ``npuc.compile(out=DIR)``)."""
    return Compiled(path)
