"""Per-op tables (IR op class -> function) for the lowerings and exporters, in the style of
`npuc.sim.engine.KernelTable`: each function registers itself with a decorator and lookup
walks the op's class hierarchy, so an op subclass lowers like its base unless it registers
its own function. Adding an op to a backend or an exporter is one registered function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OpTable:
    """Functions by IR op type (looked up along the op's class hierarchy)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._fn: dict[type, Callable[..., Any]] = {}

    def register(self, *types: type) -> Callable:
        """``@TABLE.register(Dense)`` on the function for a Dense, or on a class whose one
        instance is the rule (like a stateful kernel)."""

        def deco(rule: Any) -> Any:
            obj = rule() if isinstance(rule, type) else rule
            for t in types:
                if t in self._fn:
                    raise ValueError(f"{self.what}: {t.__name__} is registered twice")
                self._fn[t] = obj
            return rule

        return deco

    def lookup(self, op: Any) -> Callable[..., Any] | None:
        """The function for ``op`` (an op or an op class) or its nearest registered base; None if none."""
        for cls in (op if isinstance(op, type) else type(op)).__mro__:
            fn = self._fn.get(cls)
            if fn is not None:
                return fn
        return None

    def types(self) -> list[str]:
        return sorted(t.__name__ for t in self._fn)
