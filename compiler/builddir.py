"""The layout of a compile output directory, shared by every CLI verb.

::

    DIR/manifest.json      what was compiled: model, targets, steps, npuc version
    DIR/graph/             the float graph (source semantics)
    DIR/<target>/          the quantized graph for each target (integer semantics)
    DIR/lava/              Lava module + netx HDF5 (target loihi2)
    DIR/rtl/               Verilog, memories, cocotb testbench (target fpga)
    DIR/report.json        pass log, resources, quantization error
    DIR/report/            plots

A directory that holds ``graph.json`` directly is accepted as a bare graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import BuildDirError  # noqa: F401  (re-exported)
from .ir import Graph
from .ir.serialize import GRAPH_FILE

MANIFEST = "manifest.json"


class BuildDir:
    """Accessors for a compile output directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise BuildDirError(f"{self.path}: no such directory (run 'npuc compile ... --out {self.path}' first)")
        self.bare = (self.path / GRAPH_FILE).is_file()
        if not self.bare and not (self.path / MANIFEST).is_file():
            raise BuildDirError(f"{self.path}: neither an npuc build directory ({MANIFEST}) nor a graph directory ({GRAPH_FILE})")

    @property
    def manifest(self) -> dict[str, Any]:
        if self.bare:
            return {"targets": []}
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BuildDirError(f"{self.path / MANIFEST}: unreadable ({e})") from None

    @property
    def targets(self) -> list[str]:
        return list(self.manifest.get("targets", []))

    def float_graph(self) -> Graph:
        return Graph.load(self.path if self.bare else self.path / "graph")

    def target_name(self, target: str | None) -> str:
        """Resolve ``--target`` (optional when exactly one target was compiled)."""
        if self.bare:
            raise BuildDirError(f"{self.path} is a bare graph directory; it has no compiled targets")
        targets = self.targets
        if not targets:
            raise BuildDirError(f"{self.path} was compiled without a target (no --target): only the float "
                                "engine can run it; recompile with --target loihi2 or --target fpga")
        if target is None:
            if len(targets) != 1:
                raise BuildDirError(f"{self.path} was compiled for {targets}: choose one with --target (target= in Python)")
            return targets[0]
        name = target.partition(":")[0]
        if name not in targets:
            raise BuildDirError(f"{self.path} has no target '{name}' (compiled: {targets})")
        spec = self.manifest.get("specs", {}).get(name, name)
        if ":" in target and target != spec:
            raise BuildDirError(f"{self.path} was compiled for '{spec}', not '{target}': target options "
                                "apply when compiling (npuc compile --target ...)")
        return name

    def target_for_kind(self, kind: str) -> str:
        """The compiled target of a kind (``loihi2`` or ``fpga``), e.g. for an engine."""
        from .targets import load_target

        matches = [t for t in self.targets if load_target(self.manifest.get("specs", {}).get(t, t)).kind == kind]
        if not matches:
            raise BuildDirError(f"{self.path} has no {kind} target (compiled: {self.targets}); "
                                f"compile with --target {kind}")
        if len(matches) > 1:
            raise BuildDirError(f"{self.path} has several {kind} targets {matches}: choose one with --target (target= in Python)")
        return matches[0]

    def int_graph(self, target: str | None = None) -> Graph:
        if self.bare:
            g = Graph.load(self.path)
            if g.profile is None:
                raise BuildDirError(f"{self.path}: graph is not quantized (no numeric profile)")
            return g
        return Graph.load(self.path / self.target_name(target))

    def sub(self, name: str) -> Path:
        return self.path / name
