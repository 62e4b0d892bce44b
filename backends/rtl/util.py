"""Helpers shared by the RTL lowering modules: the support error, identifiers, constants and the
lowering tables."""

from __future__ import annotations

import re

import numpy as np

from ...errors import RtlSupportError  # noqa: F401  (re-exported)


def ident(name: str, limit: int = 40) -> str:
    """A Verilog-safe fragment of a node name (letters, digits, '_'); callers add a unique prefix,
    so the result can never be a keyword or collide."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "n"
    return s[:limit]


def vconst(value: int, width: int) -> str:
    """A sized signed Verilog literal, e.g. ``-12'sd5``."""
    v = int(value)
    return f"-{width}'sd{-v}" if v < 0 else f"{width}'sd{v}"


def uconst(value: int, width: int) -> str:
    """A sized unsigned Verilog literal, e.g. ``12'd5``."""
    v = int(value)
    if v < 0 or v >> width:
        raise ValueError(f"{v} does not fit {width} unsigned bits")
    return f"{width}'d{v}"


def words(values) -> np.ndarray:
    """An object array of python ints (a memory image)."""
    return np.array([int(v) for v in values], dtype=object)


