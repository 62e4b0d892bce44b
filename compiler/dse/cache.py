"""The per-point cache of an explore run (``DIR/cache/``), which is what lets a run resume.

* ``points/<key>.json``: the point's row; ``points/<key>.tar.gz``: its build bundle. The key
  hashes the source (float graph files, data, labels), the target spec, the point's knob
  values, the measuring options and npuc's version: any change measures the point again.
* ``synth.json``: Yosys totals by design hash and flow, shared by points whose RTL is the
  same (e.g. points that differ only in a pass option that leaves the weights unchanged).

Entries are written to a temporary name and renamed, so an interrupted run never leaves a
half-written entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__


def fingerprint(graph: Any, x: np.ndarray, y: np.ndarray) -> str:
    """Hash of the float graph (its saved files), the data and the labels."""
    h = hashlib.sha256(__version__.encode())
    with tempfile.TemporaryDirectory(prefix="npuc-fp-") as tmp:
        graph.save(tmp)
        for p in sorted(Path(tmp).rglob("*")):
            if p.is_file():
                h.update(p.name.encode() + b"\0" + p.read_bytes())
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class PointCache:
    def __init__(self, root: Path, source: str, target: str, options: Any) -> None:
        self.dir = root / "points"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.synth_file = root / "synth.json"
        opts = {k: v for k, v in dataclasses.asdict(options).items() if k != "keep_build"}
        self._base = json.dumps({"source": source, "target": target, "options": opts}, sort_keys=True)

    def key(self, point: dict[str, str]) -> str:
        return hashlib.sha256((self._base + json.dumps(point, sort_keys=True)).encode()).hexdigest()[:20]

    def get(self, point: dict[str, str]) -> dict[str, Any] | None:
        p = self.dir / f"{self.key(point)}.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):  # a damaged entry is measured again
            return None

    def put(self, point: dict[str, str], row: dict[str, Any], build: bytes | None) -> None:
        key = self.key(point)
        if build is not None:
            _atomic(self.dir / f"{key}.tar.gz", build)
        _atomic(self.dir / f"{key}.json", json.dumps(row, indent=1, sort_keys=True).encode())

    def build(self, key: str) -> bytes | None:
        p = self.dir / f"{key}.tar.gz"
        return p.read_bytes() if p.is_file() else None

    def synth(self) -> dict[str, Any]:
        try:
            return json.loads(self.synth_file.read_text())
        except (OSError, ValueError):
            return {}

    def add_synth(self, new: dict[str, Any]) -> None:
        if new:
            _atomic(self.synth_file, json.dumps({**self.synth(), **new}, indent=1, sort_keys=True).encode())


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
