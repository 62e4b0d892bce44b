"""Shared helpers for benchmark scripts: a printed table and a machine/date stamp."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable


def machine() -> str:
    """Date, CPU count and platform, printed with every table so pasted figures stay honest."""
    cpu = platform.processor() or platform.machine()
    return f"({datetime.date.today().isoformat()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()})"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


class Table:
    """A titled table of dict rows, printed with rich (and as markdown with ``markdown()``)."""

    def __init__(self, title: str, columns: Sequence[str]) -> None:
        self.title, self.columns = title, list(columns)

    def print(self, rows: Sequence[dict[str, Any]]) -> None:
        t = RichTable(title=self.title)
        for c in self.columns:
            t.add_column(c, justify="right" if c != self.columns[0] else "left")
        for r in rows:
            t.add_row(*(_fmt(r.get(c, "")) for c in self.columns))
        Console(width=160).print(t)

    def markdown(self, rows: Sequence[dict[str, Any]]) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in self.columns) + " |" for r in rows]
        return "\n".join(lines)
