"""Pass infrastructure: named passes with typed options, a registry, and pipelines.

A pass is a frozen dataclass with a kebab-case ``name`` and one method,
``apply(graph, ctx) -> Graph``. Its docstring states what it rewrites and
what holds afterwards. `run_pipeline` applies passes in order, calls
``Graph.verify()`` after each one, and records what each pass did in the
context's log (printed with ``--verbose`` and saved to ``report.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import PassError  # noqa: F401  (re-exported)
from ..ir import Graph

PASSES: dict[str, type[Pass]] = {}


@dataclass
class PassContext:
    """What passes may read and where they report.

    Attributes:
        target: the `npuc.targets.Target` being compiled for (None for
            target-independent pipelines).
        calibration: user inputs used to measure ranges and the float-vs-int gap.
        labels: optional labels for the calibration inputs.
        allow_approx: approximate target-missing features instead of failing.
        log: one entry per pass run (name, seconds, summary, details).
        echo: called with a line of text for ``--verbose``.
    """

    target: Any = None
    calibration: list[np.ndarray] | None = None
    labels: np.ndarray | None = None
    allow_approx: bool = False
    log: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    echo: Callable[[str], None] | None = None
    reference: Graph | None = None  # the float graph before any pass (source semantics)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self.echo:
            self.echo(f"  warning: {msg}")


class Pass:
    """Base class of passes (subclasses are frozen dataclasses)."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            PASSES[cls.name] = cls

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """What the last ``apply`` did (counts of rewrites etc.), for the log."""
        return dict(getattr(self, "_summary", {}))

    def _report(self, **items: Any) -> None:
        object.__setattr__(self, "_summary", items)


def run_pipeline(graph: Graph, passes: Sequence[Pass], ctx: PassContext) -> Graph:
    """Apply ``passes`` in order to a copy of ``graph``.

    Returns:
        The transformed graph; ``graph`` itself is not modified.

    Raises:
        PassError: from a pass that cannot proceed.
        GraphError: if a pass leaves the graph invalid (a bug in the pass).
    """
    g = graph.copy()
    for p in passes:
        t0 = time.perf_counter()
        nodes_before = len(g)
        g = p.apply(g, ctx)
        g.verify()
        entry = {"pass": p.name, "seconds": round(time.perf_counter() - t0, 4), "nodes": [nodes_before, len(g)]}
        entry.update(p.summary())
        ctx.log.append(entry)
        if ctx.echo:
            details = ", ".join(f"{k}={v}" for k, v in p.summary().items() if not isinstance(v, (dict, list)))
            ctx.echo(f"pass {p.name}: {nodes_before} -> {len(g)} nodes in {entry['seconds']:.3f} s" + (f" ({details})" if details else ""))
    return g


def make_pass(name: str, **options: Any) -> Pass:
    """Instantiate a registered pass by name with typed options."""
    if name not in PASSES:
        raise PassError(f"unknown pass '{name}'; passes: {sorted(PASSES)}")
    return PASSES[name](**options)
