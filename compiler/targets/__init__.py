"""Target descriptions: numeric profile + resources, one JSON data file per target.

A target spec is a name (``loihi2``, ``fpga``), a name with overrides
(``fpga:weight_bits=6,state_bits=12,lanes=4``; list fields join values with
``+``: ``spike_types=binary+ternary``; many-core targets also take per-core limits:
``loihi2:neurons_per_core=1024,cores_per_chip=64``) or a path to a JSON file in the same
schema: ``name``, ``kind`` (the backend, see `npuc.backends`), ``profile``
(`NumericProfile` fields), ``options`` (the backend's options), optional
``cores``, ``energy`` and ``pipeline`` (text, e.g.
``"fold-batchnorm,legalize,quantize,map-cores{order=chw},place-cores"``).
Every field in the shipped files cites its source.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import TargetError  # noqa: F401  (re-exported)
from ..ir.values import NumericProfile

BUILTIN = ("loihi2", "fpga")


@dataclass(frozen=True)
class CoreResources:
    """Per-core limits of a many-core target (every limit is enforced by map-cores)."""

    neurons_per_core: int
    synapse_memory_bits_per_core: int
    input_axons_per_core: int
    output_axons_per_core: int
    neuron_groups_per_core: int
    cores_per_chip: int
    mesh: tuple[int, int]
    chips: int = 1
    max_delay: int = 62
    sources: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Target:
    """A compilation target: its kind (which backend), numeric profile, resources and options."""

    name: str
    kind: str
    description: str
    profile: NumericProfile
    cores: CoreResources | None
    options: dict[str, Any]
    energy: dict[str, Any]
    spec: str
    pipeline: str | None = None
    """Pass pipeline in text form from the target file (None: the backend's default)."""

    @property
    def fpga(self) -> dict[str, Any]:
        """The backend options (the name older code and target files use for FPGA options)."""
        return self.options


# Override keys that set several profile fields at once.
_ALIASES = {"state_bits": ("u_bits", "v_bits"), "rounding": ("decay_rounding",), "overflow": ("u_overflow", "v_overflow")}
_LIST_FIELDS = ("spike_types", "reset_modes", "reset_timings", "compares")


def _parse_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def load_target(spec: str) -> Target:
    """Resolve a target spec (see module docstring).

    Raises:
        TargetError: unknown name, unreadable or malformed file, or an override naming an
            unknown field or an invalid value.
    """
    from ..backends import for_kind

    name, _, overrides = spec.partition(":")
    doc = _read(name)
    where = f"target '{name}'" if name in BUILTIN else f"target file {name}"
    kind = doc.get("kind")
    if not isinstance(kind, str):
        raise TargetError(f"{where}: field 'kind' must name the backend (e.g. \"kind\": \"fpga\")")
    backend = for_kind(kind)
    prof = dict(_section(doc, "profile", where))
    opts = {k: v for k, v in _section(doc, "options", where, _section(doc, kind, where)).items() if k != "sources"}
    cores_doc = dict(_section(doc, "cores", where)) if doc.get("cores") else None
    if overrides:
        _apply_overrides(spec, name, overrides, prof, opts, backend, cores_doc)
    for key, value in list(opts.items()):
        if key not in backend.options:
            raise TargetError(f"{where}: unknown option '{key}' for kind '{kind}'; options: {sorted(backend.options)}")
        try:
            opts[key] = backend.options[key].parse(value)
        except ValueError as e:
            raise TargetError(f"target '{spec}': option '{key}': {value!r} {e}") from None
    if backend.adjust_profile is not None:
        prof = backend.adjust_profile(prof, opts)
    try:
        profile = NumericProfile(**{k: tuple(v) if isinstance(v, list) else v for k, v in prof.items()})
        cores = None
        if cores_doc:
            cores_doc["mesh"] = tuple(cores_doc["mesh"])
            cores = CoreResources(**cores_doc)
    except (TypeError, ValueError, KeyError) as e:
        raise TargetError(f"target '{spec}': {e}") from None
    pipeline = doc.get("pipeline")
    if pipeline is not None and not isinstance(pipeline, str):
        raise TargetError(f"{where}: field 'pipeline' must be text like \"fold-batchnorm,legalize,quantize\"")
    return Target(doc["name"], kind, doc.get("description", ""), profile, cores, opts, doc.get("energy", {}), spec,
                  pipeline)


def _read(name: str) -> dict[str, Any]:
    if name in BUILTIN:
        doc = json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text())
    else:
        path = Path(name)
        if not path.is_file():
            raise TargetError(f"unknown target '{name}': use one of {list(BUILTIN)} or a path to a target JSON file")
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TargetError(f"{path}: cannot read target file ({e})") from None
        if not isinstance(doc, dict):
            raise TargetError(f"{path}: a target file is a JSON object, got {type(doc).__name__}")
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise TargetError(f"target file {name}: field 'name' (text) is missing")
    return doc


def _section(doc: dict[str, Any], key: str, where: str, default: Any = None) -> dict[str, Any]:
    value = doc.get(key, default if default is not None else {})
    if not isinstance(value, dict):
        raise TargetError(f"{where}: field '{key}' must be an object, got {type(value).__name__}")
    return value


CORE_OVERRIDES = tuple(f.name for f in dataclasses.fields(CoreResources) if f.name not in ("mesh", "sources"))
"""Per-core limits a many-core target's spec can override (``loihi2:neurons_per_core=1024``)."""


def _apply_overrides(spec: str, name: str, overrides: str, prof: dict[str, Any], opts: dict[str, Any],
                     backend: Any, cores: dict[str, Any] | None = None) -> None:
    fields = {f.name for f in dataclasses.fields(NumericProfile)} - {"name", "notes"}
    core_keys = set(CORE_OVERRIDES) if cores is not None else set()
    seen: set[str] = set()
    for item in overrides.split(","):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq:
            raise TargetError(f"target override '{item}' must look like key=value")
        if key in seen:
            raise TargetError(f"target override '{key}' is given twice in '{spec}'")
        seen.add(key)
        text = val.strip()
        if key in _ALIASES:
            for k in _ALIASES[key]:
                prof[k] = _parse_value(text)
        elif key in backend.options:
            opts[key] = text
        elif key in _LIST_FIELDS:
            prof[key] = tuple(v for v in text.split("+") if v)  # spike_types=binary+ternary
        elif key in fields:
            prof[key] = _parse_value(text)
        elif key in core_keys:
            value = _parse_value(text)
            if not isinstance(value, int) or value < 1:
                raise TargetError(f"target '{spec}': {key} must be a positive integer, got {text!r}")
            cores[key] = value
        else:
            raise TargetError(
                f"target '{name}' (kind {backend.kind}) has no option '{key}'; options: "
                f"{sorted(fields | set(_ALIASES) | set(backend.options) | core_keys)} (lists such as spike_types take "
                "values joined by '+')"
            )
