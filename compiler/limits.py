"""Bounds on work that a number in a file or on the command line can ask for.

A time-step count comes from the user (``--steps``), from a model's loop, or from
a file (ONNX metadata, NIR); an unchecked ``10**8`` made the compiler run for
hours. Graphs with more than `max_steps()` steps are refused with a one-line
error (raise the limit with ``--max-steps N`` or ``NPUC_MAX_STEPS=N``), and the
golden engines estimate their memory before allocating and refuse a run that
cannot fit, saying how much it needs.
"""

from __future__ import annotations

import os

from .errors import UserError

MAX_STEPS_DEFAULT = 100_000
"""Default bound on time steps per sample (SHD-style audio runs use ~1,000; DVS a few hundred)."""

_override: int | None = None


def max_steps() -> int:
    """The current bound: ``set_max_steps``, else ``NPUC_MAX_STEPS``, else `MAX_STEPS_DEFAULT`."""
    if _override is not None:
        return _override
    env = os.environ.get("NPUC_MAX_STEPS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise UserError(f"NPUC_MAX_STEPS={env!r} is not an integer") from None
        if value >= 1:
            return value
        raise UserError(f"NPUC_MAX_STEPS={env!r} must be >= 1")
    return MAX_STEPS_DEFAULT


def set_max_steps(value: int | None) -> None:
    """Raise or lower the bound for this process (``--max-steps``); None restores the default."""
    global _override
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"max steps must be a positive integer, got {value!r}")
    _override = value


def check_steps(steps: int | None, source: str) -> None:
    """Refuse a time-step count above `max_steps()`, naming where it came from."""
    if steps is not None and steps > max_steps():
        raise UserError(f"{source}: {steps:,} time steps exceed npuc's limit of {max_steps():,} per sample; "
                        "if you mean it, raise the limit with --max-steps N (or NPUC_MAX_STEPS=N)")


def available_memory() -> int:
    """Bytes of memory available to this process now (``MemAvailable``; physical memory as a fallback)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 1 << 62


_UNCHECKED = 64 << 20


def check_memory(nbytes: int, what: str) -> None:
    """Refuse a request that cannot fit in the memory available now, saying how much it needs."""
    if nbytes < _UNCHECKED:  # reading /proc/meminfo costs more than simulating a small batch
        return
    avail = available_memory()
    if nbytes > 0.9 * avail:
        raise UserError(f"{what} needs about {_gib(nbytes)} of memory, {_gib(avail)} is available: "
                        "use fewer samples or time steps per call")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"
