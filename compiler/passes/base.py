"""Pass infrastructure: named passes with typed options, a registry, and pipelines.

A pass is a frozen dataclass with a kebab-case ``name``, typed options (its
fields) and one method, ``apply(graph, ctx) -> PassResult`` (the graph and a
summary of what it did). Its docstring states what it rewrites and what holds
afterwards. `run_pipeline` applies passes in order, calls ``Graph.verify()``
after each one, and records each summary in the context's log (printed with
``--verbose`` and saved to ``report.json``). Pipelines have a text form
(`parse_pipeline`), used by target files and ``npuc compile --pipeline``.
"""

from __future__ import annotations

import dataclasses
import re
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

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


class PassResult(NamedTuple):
    """What a pass returns: the rewritten graph and a summary of what it did (counts of
    rewrites etc., saved in the pipeline log and ``report.json``)."""

    graph: Graph
    summary: dict[str, Any] = {}


class Pass:
    """Base class of passes (subclasses are frozen dataclasses whose fields are the options).

    ``apply(graph, ctx)`` returns a `PassResult`; the docstring of each pass states what it
    rewrites and what holds afterwards.
    """

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            PASSES[cls.name] = cls

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError


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
        g, summary = p.apply(g, ctx)
        g.verify()
        entry = {"pass": p.name, "seconds": round(time.perf_counter() - t0, 4), "nodes": [nodes_before, len(g)]}
        entry.update(summary)
        ctx.log.append(entry)
        if ctx.echo:
            details = ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list)))
            ctx.echo(f"pass {p.name}: {nodes_before} -> {len(g)} nodes in {entry['seconds']:.3f} s" + (f" ({details})" if details else ""))
    return g


def make_pass(name: str, **options: Any) -> Pass:
    """Instantiate a registered pass by name with typed options."""
    if name not in PASSES:
        raise PassError(f"unknown pass '{name}'; passes: {sorted(PASSES)}")
    cls = PASSES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    for key in options:
        if key not in known:
            raise PassError(f"pass '{name}' has no option '{key}'; options: {sorted(known) or 'none'}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise PassError(f"pass '{name}': {e}") from None


# -- pipelines in text form -------------------------------------------------------------------

_ITEM = re.compile(r"\s*([a-z][a-z0-9-]*)\s*(?:\{([^{}]*)\})?\s*")


def parse_pipeline(text: str) -> list[Pass]:
    """Passes from a pipeline in text form (xDSL style)::

        fold-batchnorm,legalize,quantize{percentile=99.9},map-cores{order=chw,tile=8x8},place-cores

    Option values are typed by the pass's fields: integers, numbers, ``true``/``false``,
    text, ``none`` (or ``auto``) for optional fields, and tuples of integers as ``8x8``.

    Raises:
        PassError: unknown pass or option, a value of the wrong type, or malformed text.
    """
    _load_builtin_passes()
    passes, pos = [], 0
    text = text.strip()
    if not text:
        raise PassError("empty pipeline: name the passes, e.g. 'fold-batchnorm,legalize,quantize'")
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"pipeline '{text}': cannot read a pass name at position {pos} ('{text[pos:pos + 20]}')")
        name, opts = m.group(1), m.group(2)
        passes.append(make_pass(name, **_options(name, opts or "")))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise PassError(f"pipeline '{text}': expected ',' after '{name}' at position {pos}")
            pos += 1
    return passes


def _options(name: str, text: str) -> dict[str, Any]:
    if name not in PASSES:
        raise PassError(f"unknown pass '{name}'; passes: {sorted(PASSES)}")
    hints = typing.get_type_hints(PASSES[name])
    out: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise PassError(f"pass '{name}': option '{item}' must look like key=value")
        if key not in hints or key == "name":
            raise PassError(f"pass '{name}' has no option '{key}'; options: "
                            f"{sorted(f.name for f in dataclasses.fields(PASSES[name])) or 'none'}")
        try:
            out[key] = _typed(value.strip(), hints[key])
        except ValueError:
            raise PassError(f"pass '{name}': option {key}={value.strip()!r} is not a {_type_name(hints[key])}") from None
    return out


def _typed(text: str, hint: Any) -> Any:
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        if text.lower() in ("none", "auto"):
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple(int(v) for v in re.split(r"[x:]", text))
    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    return text


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def pipeline_text(passes: Sequence[Pass]) -> str:
    """The text form of a list of passes (options that differ from their defaults)."""
    items = []
    for p in passes:
        opts = []
        for f in dataclasses.fields(p):
            v = getattr(p, f.name)
            if v != f.default:
                v = "none" if v is None else "x".join(map(str, v)) if isinstance(v, tuple) else \
                    str(v).lower() if isinstance(v, bool) else str(v)
                opts.append(f"{f.name}={v}")
        items.append(p.name + ("{" + ",".join(opts) + "}" if opts else ""))
    return ",".join(items)


def _load_builtin_passes() -> None:
    from . import fold, legalize, mapping, placement, quantize  # noqa: F401  (registers the passes)
