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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .builddir import BuildDir
from .ir import Graph


class Compiled:
    """A compiled model: the float graph, one quantized graph per target, and its build directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._bd = BuildDir(self.path)

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

    def simulate(self, x: Any, engine: str = "float", target: str | None = None, probe: bool = False) -> Any:
        """Run an engine on ``x`` (what the model's forward takes).

        Args:
            engine: ``float``, ``int`` (golden), ``lava`` or ``rtl`` (hardware engines).
            target: which compiled target for ``int`` when there are several.
            probe: return the full `SimResult` (outputs, per-node traces, counters)
                instead of just the output array(s).
        """
        from .backends import BACKENDS, run_engine
        from .sim import simulate

        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if engine in ("float", "int"):
            g = self.graph if engine == "float" else self.quantized(target)
            res = simulate(g, xs if len(xs) > 1 else xs[0], engine, probe=probe)
        elif engine in BACKENDS:
            target = target or self._bd.target_for_kind(BACKENDS[engine][1])
            res = run_engine(self._bd, engine, [np.asarray(v) for v in xs], target=target, probe=probe)
        else:
            raise ValueError(f"unknown engine {engine!r}; choose float, int, lava or rtl")
        if probe:
            return res
        return res.outputs[0] if len(res.outputs) == 1 else tuple(res.outputs)

    def verify(self, x: Any, engine: str = "lava", target: str | None = None):
        """Compare a hardware engine with the golden integer engine (`npuc.sim.compare.Comparison`)."""
        from .verify import verify

        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        result, _, _ = verify(self._bd, engine, [np.asarray(v) for v in xs], target)
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
) -> Compiled:
    """Compile a PyTorch model (or an npuc `Graph`) for hardware targets.

    Args:
        model: an ``nn.Module`` (traced with `npuc.frontends.trace`) or a `Graph`.
        example_input: what ``model(x)`` takes (numpy or torch; a tuple for several inputs).
        target: ``"loihi2"``, ``"fpga"``, ``"fpga:weight_bits=6,..."`` or a list of them.
        out: build directory (default: a new temporary directory).
        calibration: inputs for quantization (default: ``example_input``).
        labels: labels for the calibration inputs (reports accuracy).
        steps: time steps for a model whose forward has no time axis.
        allow_approx: approximate target-missing neuron features instead of failing.
        verbose: print each pass.

    Returns:
        `Compiled`, backed by the build directory.
    """
    from .driver import build

    xs = [_np(v) for v in example_input] if isinstance(example_input, tuple) else [_np(example_input)]
    if isinstance(model, Graph):
        graph = model.verify()
    else:
        from .frontends import trace

        graph = trace(model, xs if len(xs) > 1 else xs[0], steps=steps)
    specs = [target] if isinstance(target, str) else list(target)
    calib = xs if calibration is None else ([_np(v) for v in calibration] if isinstance(calibration, tuple) else [_np(calibration)])
    path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="npuc-")) / "build"

    def echo(line: str) -> None:
        print(line)

    build(graph, specs, path, calib, None if labels is None else _np(labels), allow_approx,
          echo if verbose else None, echo if verbose else None, type(model).__name__)
    return Compiled(path)


def _np(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(x)
