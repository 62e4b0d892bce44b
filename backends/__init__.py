"""Backends: the registry of target kinds, and running a build with a hardware engine.

A backend registers one `Backend` record saying everything the compiler needs
to know about a target kind: the engine name users pass to ``--engine``, the
folder its artifacts go to in a build directory, its default pass pipeline
(text form, see `npuc.passes.base.parse_pipeline`), the target options it reads
(``--target KIND:option=value``) and the module that implements

* ``emit(graph, out_dir, target, version=None) -> list[Path]``: write the
  artifacts for a quantized `Graph` (backends read only the IR);
* ``run(artifact_dir, inputs, probe=False, waves=False) -> SimResult``: run the
  emitted artifacts on user inputs and return outputs (and, with ``probe``,
  per-node traces) in the golden engines' logical-time ``[T, B, ...]`` layout.

The built-in backends (`npuc.backends.lava`, `npuc.backends.rtl`) register
themselves when imported; other packages can add one through the
``npuc.backends`` entry point group (an entry point naming a module that calls
`register`). Implementing modules are imported on first use, so listing
backends (e.g. for ``--help``) stays cheap. docs/architecture.md has the
checklist for adding a target kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TargetError, UserError

BUILTIN = ("npuc.backends.lava", "npuc.backends.rtl")


@dataclass(frozen=True)
class Option:
    """A backend option settable as ``--target KIND:name=value`` or in a target file's ``options``.

    ``parse`` turns the text (or the JSON value) into the value, raising ``ValueError`` with
    the reason when it is not valid.
    """

    parse: Callable[[Any], Any]
    help: str = ""


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be an integer >= 1")
    try:
        v = int(value)
    except ValueError:
        raise ValueError("must be an integer >= 1") from None
    if v < 1:
        raise ValueError("must be an integer >= 1")
    return v


def flag(value: Any) -> bool:
    """A boolean option: ``1``/``0``, ``true``/``false``, ``yes``/``no`` (or a JSON bool)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0 (true/false)")


def positive_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number > 0")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number > 0") from None
    if not v > 0 or v != v or v == float("inf"):
        raise ValueError("must be a number > 0")
    return int(v) if v == int(v) else v


@dataclass(frozen=True)
class Backend:
    """Everything the compiler knows about one target kind."""

    kind: str
    """Target kind named by target files (``"kind": "loihi2"``)."""
    engine: str
    """Engine name for ``npuc simulate/verify --engine``."""
    folder: str
    """Artifact folder inside a build directory."""
    pipeline: str
    """Default pass pipeline in text form (a target file's ``pipeline`` replaces it)."""
    module: str
    """Module with ``emit`` and ``run``, imported on first use."""
    options: Mapping[str, Option] = field(default_factory=dict)
    """Target options this backend reads (``target.options``)."""
    description: str = ""
    adjust_profile: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    """Optional: the target's profile fields given its parsed options (e.g. loihi2's ``stock_only``
    narrows the neuron features to what lava-nc's stock processes compute)."""

    def implementation(self) -> Any:
        return importlib.import_module(self.module)

    def emit(self, graph: Any, out_dir: Path, target: Any, version: str | None = None) -> list[Path]:
        return self.implementation().emit(graph, out_dir, target, version=version)

    def run(self, artifact_dir: Path, inputs: Any, probe: Any = False, waves: bool = False) -> Any:
        return self.implementation().run(artifact_dir, inputs, probe=probe, waves=waves)


_REGISTRY: dict[str, Backend] = {}
_loaded = False


def register(backend: Backend) -> Backend:
    """Add a backend (called by the backend package when it is imported)."""
    for other in _REGISTRY.values():
        if other.kind != backend.kind and (other.engine == backend.engine or other.folder == backend.folder):
            raise ValueError(f"backend '{backend.kind}' reuses engine/folder of '{other.kind}'")
    _REGISTRY[backend.kind] = backend
    return backend


def registry() -> dict[str, Backend]:
    """Every registered backend by target kind (built-ins and ``npuc.backends`` entry points)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN:
            importlib.import_module(name)
        from importlib.metadata import entry_points

        for ep in entry_points(group="npuc.backends"):
            ep.load()
    # built-ins first, in BUILTIN order, whatever imported one of them earlier; then plugins
    rank = {name: i for i, name in enumerate(BUILTIN)}
    return dict(sorted(_REGISTRY.items(), key=lambda kv: rank.get(kv[1].module, len(rank))))


def for_kind(kind: str) -> Backend:
    """The backend of a target kind."""
    backends = registry()
    if kind not in backends:
        raise TargetError(f"no backend for target kind '{kind}'; kinds: {sorted(backends)}")
    return backends[kind]


def for_engine(engine: str) -> Backend:
    """The backend whose hardware engine is ``engine`` (``lava``, ``rtl``)."""
    for b in registry().values():
        if b.engine == engine:
            return b
    raise UserError(f"unknown engine '{engine}'; engines: float, int, {', '.join(engines())}")


def engines() -> list[str]:
    """Hardware engine names, in registration order."""
    return [b.engine for b in registry().values()]


def backend(engine: str) -> Any:
    """The implementing module of an engine (``lava`` or ``rtl``)."""
    return for_engine(engine).implementation()


def run_engine(build_dir: Any, engine: str, inputs: list[Any], target: str | None = None, waves: bool = False,
               probe: bool = False, allow_modified: bool = False) -> Any:
    """Run a compiled build with a hardware engine (used by ``npuc simulate`` / ``verify``).

    The engines execute generated code (Lava's Python module, the Verilog and its cocotb
    testbench), so a build whose files changed since compile is refused unless
    ``allow_modified`` (``--allow-modified``).
    """
    b = for_engine(engine)
    if target is not None:
        check_target_kind(build_dir, engine, target)
    path = Path(build_dir.path) / b.folder
    if not path.is_dir():
        raise UserError(f"{build_dir.path} has no {b.folder}/ folder: compile with "
                        f"--target {b.kind} to use the {engine} engine")
    if not allow_modified:
        build_dir.check_unmodified()
    return b.run(path, inputs, probe=probe, waves=waves)


def check_target_kind(build_dir: Any, engine: str, target: str) -> str:
    """The build's target named by ``target``, which must be of the engine's kind."""
    from ..targets import load_target

    b = for_engine(engine)
    name = build_dir.target_name(target)
    kind = load_target(build_dir.manifest.get("specs", {}).get(name, name)).kind
    if kind != b.kind:
        raise UserError(f"the {engine} engine runs the {b.kind} build; --target {target} "
                        f"is a target of kind {kind}")
    return name


__all__ = ["Backend", "Option", "register", "registry", "for_kind", "for_engine", "engines", "backend",
           "run_engine", "check_target_kind", "positive_int", "positive_number", "flag"]
