"""Neuron NPEs (paper section III): the generalised LIF and its special cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..values import QLIF
from .base import (  # noqa: F401  (re-exported)
    CHARGES,
    COMPARES,
    RESET_TIMINGS,
    RESETS,
    SPIKES,
    Op,
    Shape,
    as_array,
    broadcastable,
    check_choice,
    check_int,
    freeze,
)

FLOAT_FORMS: dict[str, tuple[str, ...]] = {"npuc": ()}
"""Float arithmetic forms and the `LIF.form_args` each needs. A form evaluates
the neuron in the exact operation order (and with the raw parameters) of the
library a model came from, so float32 results match that library bit for bit.
The IR knows only its own form (``npuc``: the canonical fields); the library
forms are registered with `register_form` by the module that defines their step
functions (`FORM_MODULES`), which is imported the first time an unknown form is met."""

FORM_MODULES = ("npuc.sim.float_forms",)
"""Modules that register library float forms when imported (loaded lazily, so the IR
does not import the simulator; a plugin appends its module here)."""


def register_form(name: str, args: tuple[str, ...]) -> None:
    """Declare a float form and the names of its required ``form_args``."""
    FLOAT_FORMS[name] = tuple(args)


def _known_forms() -> tuple[str, ...]:
    import importlib

    for module in FORM_MODULES:
        importlib.import_module(module)
    return tuple(FLOAT_FORMS)


@dataclass(frozen=True, eq=False)
class LIF(Op):
    """Generalised leaky integrate-and-fire neuron (paper eq. 9), per element.

    State: membrane ``v`` and, when ``alpha_i`` is set, a synaptic current
    ``i`` (CUBA). With input ``x_t`` and output ``s_t``::

        i_t = alpha_i * i_{t-1} + x_t            (CUBA; otherwise i_t = x_t)
        h_t = alpha * v_{t-1} + gain * i_t + bias
        s_t = spike(h_t)
        v_t = reset(h_t, s_t)

    Spike types (``spike``), with ``theta = threshold`` and compare ``>``
    (``compare="gt"``) or ``>=`` (``"ge"``):

    * ``binary``: ``s = H(h - theta)`` (eq. 4).
    * ``ternary``: ``s = +1`` if ``h > theta``, ``-1`` if ``h < threshold_lo``,
      else 0 (eq. 6; ``>=``/``<=`` with ``ge``).
    * ``multilevel``: ``s = clip(floor(h / theta), 0, levels - 1)`` graded
      spikes (eq. 7; ``levels=None`` is unbounded, as sinabs MultiSpike); ``ge`` only.
    * ``bernoulli``: ``s ~ Bernoulli(sigmoid(h - theta))`` (eq. 5), drawn from
      the LFSR stream of width ``bits`` seeded with ``seed`` (see `npuc.sim.lfsr`).

    Reset (``reset``) with ``reset_timing="same"`` acts on the step's own spike:
    ``subtract``: ``v = h - s * theta`` (ternary: ``theta`` for +1 and
    ``threshold_lo`` for -1); ``value``: ``v = reset_value`` where ``s != 0``;
    ``none``: ``v = h``. With ``reset_timing="delayed"`` (snntorch's default)
    the reset triggered by ``s_{t-1}`` is applied at step t:
    ``subtract``: ``h_t = alpha v_{t-1} + gain i_t + bias - s_{t-1} theta``
    (the subtracted threshold is not decayed); ``value``: ``v_{t-1}`` is
    replaced by ``reset_value`` before decaying; ``delayed_charge``: ``h_t``
    itself is replaced by ``reset_value`` (the step's input included). ``IF`` is
    ``alpha = 1``.

    Charge (``charge``, CUBA only): ``current`` charges with the step's current
    ``i_t`` as above; ``previous`` charges with the previous one,
    ``h_t = alpha v_{t-1} + gain i_{t-1} + bias``, so a step's input reaches the
    membrane one step later through a difference of exponentials (snntorch's
    ``Alpha``: ``mem = tau (syn_exc + syn_inh)`` with ``syn_exc = i`` and
    ``mem_t = beta mem_{t-1} + tau (alpha - beta) syn_exc_{t-1}``). Its reset is
    ``none`` or a ``delayed_charge`` value reset, which then also clears the
    current: ``i_t = 0``.

    Output ports: ``spikes`` (default), ``v`` (membrane at the end of the
    step, after any same-step reset) and ``i`` (current).

    Per-neuron parameters (``alpha``, ``gain``, ``bias``, ``threshold``,
    ``alpha_i``, ``v_min``) are scalars or arrays broadcastable to the neuron shape.
    ``form`` selects the float arithmetic (see `FLOAT_FORMS`) and ``form_args``
    holds the raw library parameters that form reads (e.g. ``tau`` where the
    library divides by it); the canonical fields above must describe the same
    dynamics, because the integer semantics (``q``) are derived from them.
    """

    alpha: np.ndarray = 1.0  # type: ignore[assignment]
    threshold: np.ndarray = 1.0  # type: ignore[assignment]
    gain: np.ndarray = 1.0  # type: ignore[assignment]
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    alpha_i: np.ndarray | None = None
    threshold_lo: np.ndarray | None = None
    reset: str = "subtract"
    reset_value: float = 0.0
    reset_timing: str = "same"
    compare: str = "gt"
    spike: str = "binary"
    levels: int | None = None
    bits: int = 16
    seed: int = 1
    v_min: np.ndarray | None = None
    v_init: float = 0.0
    charge: str = "current"
    form: str = "npuc"
    form_args: dict = field(default_factory=dict)
    q: QLIF | None = None

    ports = ("spikes", "v", "i")
    kind = "neuron"
    roles = frozenset({"population"})
    stateful = True

    def __post_init__(self) -> None:
        for name in ("alpha", "threshold", "gain", "bias"):
            freeze(self, **{name: as_array(getattr(self, name), name)})
        for name in ("alpha_i", "threshold_lo", "v_min"):
            if getattr(self, name) is not None:
                freeze(self, **{name: as_array(getattr(self, name), name)})
        freeze(self, v_init=float(self.v_init))
        check_choice(self.reset, "reset", RESETS)
        check_choice(self.reset_timing, "reset_timing", RESET_TIMINGS)
        check_choice(self.compare, "compare", COMPARES)
        check_choice(self.spike, "spike", SPIKES)
        check_choice(self.charge, "charge", CHARGES)
        if self.charge == "previous":
            if self.alpha_i is None:
                raise ValueError("field 'charge': charging with the previous current needs a current state (alpha_i)")
            if self.reset != "none" and (self.reset, self.reset_timing) != ("value", "delayed_charge"):
                raise ValueError("field 'charge': charging with the previous current takes reset 'none' or a "
                                 f"'delayed_charge' value reset, not {self.reset!r} / {self.reset_timing!r}")
        check_choice(self.form, "form", tuple(FLOAT_FORMS) if self.form in FLOAT_FORMS else _known_forms())
        missing = [a for a in FLOAT_FORMS[self.form] if a not in self.form_args]
        if missing:
            raise ValueError(f"field 'form_args': form '{self.form}' needs {missing}")
        freeze(self, form_args={k: as_array(v, f"form_args.{k}") for k, v in sorted(self.form_args.items())})
        freeze(self, reset_value=float(self.reset_value))
        if self.spike == "ternary":
            if self.threshold_lo is None:
                raise ValueError("field 'threshold_lo': ternary spikes need a lower threshold")
            if np.any(self.threshold_lo >= self.threshold):
                raise ValueError("field 'threshold_lo': must be below threshold")
        elif self.threshold_lo is not None:
            raise ValueError(f"field 'threshold_lo': only used by ternary spikes, not {self.spike}")
        if self.spike == "multilevel":
            if self.compare != "ge":
                raise ValueError("field 'compare': multilevel spikes floor h/theta, which is 'ge'")
            if np.any(self.threshold <= 0):
                raise ValueError("field 'threshold': multilevel spikes need a positive threshold")
            if self.levels is not None:
                check_int(self.levels, "levels", 2)
        elif self.levels is not None:
            raise ValueError(f"field 'levels': only used by multilevel spikes, not {self.spike}")
        check_int(self.bits, "bits", 3, 32)
        check_int(self.seed, "seed", 1, 2**self.bits - 1)

    @property
    def cuba(self) -> bool:
        """Whether the neuron has a synaptic current state."""
        return self.alpha_i is not None

    def per_neuron(self) -> dict[str, np.ndarray]:
        """The parameters that may vary per neuron."""
        out = {k: getattr(self, k) for k in ("alpha", "threshold", "gain", "bias")}
        for k in ("alpha_i", "threshold_lo", "v_min"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        s = tuple(s)
        for name, arr in self.per_neuron().items():
            broadcastable(arr, s, name)
        if self.q is not None:
            broadcastable(self.q.bias_mant, s, "q.bias_mant")
        return {"spikes": s, "v": s, "i": s}


@dataclass(frozen=True, eq=False)
class IF(LIF):
    """Integrate-and-fire neuron: the `LIF` with ``alpha = 1`` (no leak)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if np.any(self.alpha != 1):
            raise ValueError("field 'alpha': IF has no leak, alpha must be 1")
