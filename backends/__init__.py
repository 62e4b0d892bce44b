"""Backends: emit hardware from a quantized graph, and run it as an engine.

Each backend is registered here by name with two entry points, imported lazily
so that a missing optional toolchain only affects its own backend:

* ``emit(graph, out_dir, target) -> list[Path]``: write the artifacts for a
  quantized `Graph` (backends read only the IR).
* ``run(build_dir, inputs, probe) -> SimResult``: run the emitted artifacts on
  user inputs and return outputs (and, with ``probe``, per-node traces) in the
  golden engines' logical-time ``[T, B, ...]`` layout.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import UserError

BACKENDS = {
    # engine name: (module, target kind, artifact folder inside a build directory)
    "lava": ("npuc.backends.lava", "loihi2", "lava"),
    "rtl": ("npuc.backends.rtl", "fpga", "rtl"),
}


def backend(engine: str) -> Any:
    """The backend module of an engine (``lava`` or ``rtl``)."""
    if engine not in BACKENDS:
        raise ValueError(f"unknown backend engine {engine!r}; choose from {list(BACKENDS)}")
    return importlib.import_module(BACKENDS[engine][0])


def run_engine(build_dir: Any, engine: str, inputs: list[Any], target: str | None = None, waves: bool = False,
               probe: bool = False) -> Any:
    """Run a compiled build with a hardware engine (used by ``npuc simulate`` / ``verify``)."""
    mod = backend(engine)
    if target is not None:
        check_target_kind(build_dir, engine, target)
    path = Path(build_dir.path) / BACKENDS[engine][2]
    if not path.is_dir():
        raise UserError(f"{build_dir.path} has no {BACKENDS[engine][2]}/ folder: compile with "
                        f"--target {BACKENDS[engine][1]} to use the {engine} engine")
    return mod.run(path, inputs, probe=probe, waves=waves)


def check_target_kind(build_dir: Any, engine: str, target: str) -> str:
    """The build's target named by ``target``, which must be of the engine's kind."""
    from npuc.targets import load_target

    name = build_dir.target_name(target)
    kind = load_target(build_dir.manifest.get("specs", {}).get(name, name)).kind
    if kind != BACKENDS[engine][1]:
        raise UserError(f"the {engine} engine runs the {BACKENDS[engine][1]} build; --target {target} "
                        f"is a target of kind {kind}")
    return name
