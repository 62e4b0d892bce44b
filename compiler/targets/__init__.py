"""Target descriptions: numeric profile + resources, one JSON data file per target.

A target spec is a name (``loihi2``, ``fpga``), a name with overrides
(``fpga:weight_bits=6,state_bits=12,lanes=4``) or a path to a JSON file in the
same schema. Every field in the shipped files cites its source.
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
    """A compilation target."""

    name: str
    description: str
    profile: NumericProfile
    cores: CoreResources | None
    fpga: dict[str, Any]
    energy: dict[str, Any]
    spec: str

    @property
    def kind(self) -> str:
        return "loihi2" if self.profile.weight_scheme == "loihi" else "fpga"


# Override keys accepted after "fpga:" and what they set.
_ALIASES = {"state_bits": ("u_bits", "v_bits"), "rounding": ("decay_rounding",), "overflow": ("u_overflow", "v_overflow")}
_FPGA_KEYS = ("lanes", "clock_mhz")


def _parse_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def load_target(spec: str) -> Target:
    """Resolve a target spec (see module docstring).

    Raises:
        TargetError: unknown name, unreadable file, or an override naming an
            unknown field or an invalid value.
    """
    name, _, overrides = spec.partition(":")
    if name in BUILTIN:
        doc = json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text())
    else:
        path = Path(name)
        if not path.is_file():
            raise TargetError(f"unknown target '{name}': use one of {list(BUILTIN)} or a path to a target JSON file")
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TargetError(f"{path}: cannot read target file ({e})") from None
    prof = dict(doc.get("profile", {}))
    fpga = dict(doc.get("fpga", {}))
    if overrides:
        fields = {f.name for f in dataclasses.fields(NumericProfile)}
        seen: set[str] = set()
        for item in overrides.split(","):
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq:
                raise TargetError(f"target override '{item}' must look like key=value")
            if key in seen:
                raise TargetError(f"target override '{key}' is given twice in '{spec}'")
            seen.add(key)
            value = _parse_value(val.strip())
            if key in _ALIASES:
                for k in _ALIASES[key]:
                    prof[k] = value
            elif key in _FPGA_KEYS:
                fpga[key] = value
            elif key in fields and key not in ("name", "notes"):
                prof[key] = value
            else:
                raise TargetError(
                    f"target '{name}' has no option '{key}'; options: "
                    f"{sorted((fields - {'name', 'notes'}) | set(_ALIASES) | set(_FPGA_KEYS))}"
                )
    try:
        profile = NumericProfile(**{k: tuple(v) if isinstance(v, list) else v for k, v in prof.items()})
        cores = None
        if doc.get("cores"):
            c = dict(doc["cores"])
            c["mesh"] = tuple(c["mesh"])
            cores = CoreResources(**c)
    except (TypeError, ValueError) as e:
        raise TargetError(f"target '{spec}': {e}") from None
    for key in ("lanes", "clock_mhz"):
        v = fpga.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 1
                              or (key == "lanes" and not isinstance(v, int))):
            raise TargetError(f"target '{spec}': field '{key}': {v!r} must be "
                              f"{'an integer' if key == 'lanes' else 'a number'} >= 1")
    return Target(doc["name"], doc.get("description", ""), profile, cores, fpga, doc.get("energy", {}), spec)
