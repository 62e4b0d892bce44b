"""Lava backend: a quantized npuc graph as Lava processes for Intel Loihi 2.

* `emit(graph, out_dir, target)` writes a standalone Lava module (jinja2), its
  weights (``.npz``), ``network.json`` and a lava-dl netx HDF5 file.
* `run(artifact_dir, inputs, probe=False, waves=False)` runs them in Lava's
  bit-accurate CPU simulator and returns a `npuc.sim.engine.SimResult` in the
  golden engines' logical-time layout.
* `build_network(graph)` returns the live Lava processes.
* `lower(graph)` gives the object model (`NetworkSpec`) every mapping decision
  is recorded in; unmappable nodes raise `LavaMappingError`.

Registers the ``loihi2`` target kind (engine ``lava``). The submodules are
imported on first use (``from npuc.backends.lava import emit`` works as usual).
See docs/lava-backend.md for the mapping table and the time model.
"""

from __future__ import annotations

import importlib
from typing import Any

from .. import Backend, Option, flag, register

STOCK_FEATURES = {"spike_types": ("binary", "ternary"), "reset_modes": ("value",), "reset_timings": ("same",),
                  "compares": ("gt",)}
"""The neuron features lava-nc's stock processes (LIF, LIFReset, TernaryLIF) compute exactly."""


NETX_PROFILE = {"spike_types": ["binary"], "weight_exp_min": 0, "weight_exp_max": 0, "bias_exp_min": 6,
                "bias_exp_max": 6}
"""What ``netx=1`` fixes on top of `STOCK_FEATURES` so that lava-dl netx rebuilds every layer exactly
(backends/lava/netx.py): netx has no ternary neuron, ignores weight exponents (the file holds
``W * 2^e`` and netx re-derives its own scaling, so ``e = 0`` keeps 8-bit weights unchanged) and
gives every neuron ``bias_exp = 6``."""


def stock_only(opts: dict[str, Any]) -> bool:
    """Whether the options limit the build to lava-nc's stock processes (``stock_only``, or ``netx``)."""
    return bool(opts.get("stock_only") or opts.get("netx"))


def _adjust_profile(prof: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """``stock_only``: narrow the neuron features to `STOCK_FEATURES` (no custom processes);
    ``netx``: also `NETX_PROFILE`."""
    if not stock_only(opts):
        return prof
    out = dict(prof)
    for key, stock in STOCK_FEATURES.items():
        out[key] = [v for v in out.get(key, stock) if v in stock]
    if opts.get("netx"):
        out.update(NETX_PROFILE)
    return out


register(Backend(
    kind="loihi2", engine="lava", folder="lava", module=__name__,
    pipeline="fold-batchnorm,legalize,quantize,map-cores,place-cores",
    options={"stock_only": Option(flag, "1: use lava-nc's stock processes only (no custom neuron processes); "
                                        "features they lack are errors, or approximations with --allow-approx"),
             "netx": Option(flag, "1: quantize so that lava-dl netx rebuilds every layer of network.net exactly "
                                  "(weight exponent 0, bias exponent 6, binary spikes; implies stock_only); a "
                                  "layer netx cannot describe (pooling, residuals, recurrence) is an error")},
    description="Intel Loihi 2 through Lava processes (fixed_pt simulation here, chip via lava-loihi)",
    adjust_profile=_adjust_profile,
))

def report_section(artifact_dir: Any) -> dict[str, Any]:
    """The build report's Lava entries: every custom process (from ``network.json``) and what it needs."""
    import json
    from pathlib import Path

    from .render import CHIP_NOTE

    doc = json.loads((Path(artifact_dir) / "network.json").read_text())
    custom = doc.get("custom_processes", [])
    out = {"custom_processes": custom, "custom_processes_note": CHIP_NOTE} if custom else {}
    if doc.get("fan_in_relays"):
        out["fan_in_relays"] = doc["fan_in_relays"]
    return out


_EXPORTS = {
    "emit": ".artifacts", "LavaBackendWarning": ".artifacts", "lower": ".lowering", "LavaArtifactError": ".runner",
    "build_network": ".runner", "load_module": ".runner", "run": ".runner", "LavaMappingError": ".spec",
    "NetworkSpec": ".spec",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
