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

from .. import Backend, register

register(Backend(
    kind="loihi2", engine="lava", folder="lava", module=__name__,
    pipeline="fold-batchnorm,legalize,quantize,map-cores,place-cores",
    description="Intel Loihi 2 through Lava processes (fixed_pt simulation here, chip via lava-loihi)",
))

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
