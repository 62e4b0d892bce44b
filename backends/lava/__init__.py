"""Lava backend: a quantized npuc graph as Lava processes for Intel Loihi 2.

* `emit(graph, out_dir, target)` writes a standalone Lava module (jinja2), its
  weights (``.npz``), ``network.json`` and a lava-dl netx HDF5 file.
* `run(artifact_dir, inputs, probe=False, waves=False)` runs them in Lava's
  bit-accurate CPU simulator and returns a `npuc.sim.engine.SimResult` in the
  golden engines' logical-time layout.
* `build_network(graph)` returns the live Lava processes.
* `lower(graph)` gives the object model (`NetworkSpec`) every mapping decision
  is recorded in; unmappable nodes raise `LavaMappingError`.

See docs/lava-backend.md for the mapping table and the time model.
"""

from .emit import LavaBackendWarning, emit
from .lower import lower
from .runner import LavaArtifactError, build_network, load_module, run
from .spec import LavaMappingError, NetworkSpec

__all__ = ["emit", "run", "build_network", "lower", "load_module", "LavaMappingError", "LavaBackendWarning",
           "LavaArtifactError", "NetworkSpec"]
