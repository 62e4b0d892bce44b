"""Design spaces: ``--space "weight_bits=4..8,lanes=1,2,4,steps=8,16"`` -> knobs and points.

A knob is one of

* ``steps``: time steps per sample of a model with static inputs (``graph.num_steps``);
* a target override (`npuc.targets`): a `NumericProfile` field, an alias such as
  ``state_bits``, a backend option (``lanes``, ``stock_only``) or, on many-core targets,
  a per-core limit (``neurons_per_core``, ``cores_per_chip``);
* a pass option, ``PASS.OPTION`` (``quantize.percentile``, ``map-cores.order``), set in
  the target's pipeline.

Values are a comma-separated list (a token without ``=`` continues the previous knob) or
an inclusive integer range ``LO..HI`` (``LO..HI/STEP``). A point is one value per knob.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from ..errors import NpucError, SpaceError

STEPS = "steps"


@dataclass(frozen=True)
class Space:
    """Knobs in the order given, each with its candidate values (text, as typed)."""

    target: str
    kind: str
    knobs: dict[str, tuple[str, ...]]

    @property
    def size(self) -> int:
        n = 1
        for values in self.knobs.values():
            n *= len(values)
        return n

    def grid(self) -> list[dict[str, str]]:
        """Every point, the last knob varying fastest."""
        names = list(self.knobs)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.knobs.values())]


def parse_space(text: str, target: str) -> Space:
    """Parse ``--space`` for a target spec (``fpga``, ``loihi2``, ``fpga:lanes=2``, a JSON file).

    Raises:
        SpaceError: empty text, a value before any knob, a knob given twice, an unknown knob,
            an empty or malformed range.
    """
    from ..targets import load_target

    base = load_target(target)
    knobs: dict[str, list[str]] = {}
    current = None
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise SpaceError(f"--space {text!r}: empty item (two commas in a row?)")
        key, eq, value = token.partition("=")
        if eq:
            current = key.strip()
            if current in knobs:
                raise SpaceError(f"--space: knob '{current}' is given twice")
            knobs[current] = []
            token = value.strip()
        elif current is None:
            raise SpaceError(f"--space {text!r}: '{token}' comes before any knob=value")
        knobs[current] += _expand(current, token)
    if not knobs:
        raise SpaceError("--space is empty: give knob=values, e.g. weight_bits=4..8,lanes=1,2")
    allowed = knob_names(base)
    for name, values in knobs.items():
        if name not in allowed:
            raise SpaceError(f"--space: unknown knob '{name}' for target '{base.name}' (kind {base.kind}); "
                             f"knobs: {', '.join(sorted(allowed))}")
        if len(set(values)) != len(values):
            raise SpaceError(f"--space: knob '{name}' repeats a value: {values}")
        _check_values(base, name, values)
    return Space(target, base.kind, {k: tuple(v) for k, v in knobs.items()})


def _expand(knob: str, token: str) -> list[str]:
    if ".." not in token:
        if not token:
            raise SpaceError(f"--space: knob '{knob}' has an empty value")
        return [token]
    lo, _, rest = token.partition("..")
    hi, _, step = rest.partition("/")
    try:
        a, b, s = int(lo), int(hi), int(step) if step else 1
    except ValueError:
        raise SpaceError(f"--space: knob '{knob}': range '{token}' must be integers LO..HI or LO..HI/STEP") from None
    if s < 1:
        raise SpaceError(f"--space: knob '{knob}': range step must be positive, got {s}")
    if b < a:
        raise SpaceError(f"--space: knob '{knob}': range '{token}' is empty ({b} < {a})")
    return [str(v) for v in range(a, b + 1, s)]


def knob_names(target: Any) -> set[str]:
    """Every knob a target accepts: ``steps``, its override keys and ``PASS.OPTION`` of its pipeline."""
    from ..backends import for_kind
    from ..ir.values import NumericProfile
    from ..pipeline import target_passes
    from ..targets import _ALIASES, CORE_OVERRIDES

    fields = {f.name for f in dataclasses.fields(NumericProfile)} - {"name", "notes"}
    names = {STEPS} | fields | set(_ALIASES) | set(for_kind(target.kind).options)
    if target.cores is not None:
        names |= set(CORE_OVERRIDES)
    for p in target_passes(target):
        names |= {f"{p.name}.{f.name}" for f in dataclasses.fields(p)}
    return names


def _check_values(base: Any, name: str, values: list[str]) -> None:
    """Values that can never work (not a number for steps, an untyped pass option) fail up front;
    values a target refuses at one point only are recorded as refused rows by the runner."""
    if name == STEPS:
        for v in values:
            if not v.isdigit() or int(v) < 1:
                raise SpaceError(f"--space: steps must be positive integers, got '{v}'")
    elif "." in name:
        for v in values:
            try:
                pass_option(base, name, v)
            except NpucError as e:
                raise SpaceError(f"--space: knob '{name}={v}': {e}") from None


def pass_option(target: Any, knob: str, value: str) -> tuple[str, Any]:
    """``PASS.OPTION`` and a text value -> (pass name, typed value), typed by the pass's field."""
    from ..passes.base import parse_pipeline

    pname, _, opt = knob.partition(".")
    typed = parse_pipeline(f"{pname}{{{opt}={value}}}")[0]
    return pname, getattr(typed, opt)


def point_spec(space: Space, point: dict[str, str]) -> tuple[str, str | None, int | None]:
    """A point -> (target spec with overrides, pipeline text or None, steps or None)."""
    from ..passes.base import pipeline_text
    from ..pipeline import target_passes
    from ..targets import load_target

    name, _, base_over = space.target.partition(":")
    over = [o for o in base_over.split(",") if o]
    pass_knobs = {k: v for k, v in point.items() if "." in k}
    plain = {k: v for k, v in point.items() if "." not in k and k != STEPS}
    over = [o for o in over if o.partition("=")[0].strip() not in plain] + [f"{k}={v}" for k, v in plain.items()]
    spec = f"{name}:{','.join(over)}" if over else name
    pipeline = None
    if pass_knobs:
        target = load_target(spec)
        passes = target_passes(target)
        for knob, value in pass_knobs.items():
            pname, typed = pass_option(target, knob, value)
            passes = [dataclasses.replace(p, **{knob.partition(".")[2]: typed}) if p.name == pname else p
                      for p in passes]
        pipeline = pipeline_text(passes)
    steps = int(point[STEPS]) if STEPS in point else None
    return spec, pipeline, steps
