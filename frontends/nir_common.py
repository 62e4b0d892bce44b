"""What NIR import and export share: the time-step default, the reset names, the
cycle rule, and the differences between the nir 1.0.x releases npuc supports.

nir releases differ where npuc reads and writes them (read from the sources of
1.0.3 to 1.0.8; `make test` runs tests/test_nir.py against 1.0.4 and 1.0.8):

* ``v_reset``: nir < 1.0.6 has no such field and documents reset by subtraction
  (``v - v_threshold``); from 1.0.6 `LIF`, `IF` and `CubaLIF` carry ``v_reset``
  and document reset to it (a required argument in 1.0.6, default 0 from 1.0.7;
  ``from_dict`` and ``nir.read`` fill in 0 for files without it).
* ``NIRGraph(...)``: from 1.0.5 the constructor (and so ``nir.read``) infers and
  checks types unless ``type_check=False`` (a ``nir.read`` argument from 1.0.7);
  that check rejects grouped convolutions (it declares ``weight.shape[1]
  = C_in / groups`` input channels) and adds nodes to graphs whose root or leaf
  nodes are not `nir.Input`/`nir.Output`. npuc builds graphs unchecked and checks
  shapes itself.
* nir < 1.0.3 has no ``nir.serialization`` (dict form of nodes) and no
  `AvgPool2d`: not supported (pyproject.toml says ``nir>=1.0.3``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Collection, Sequence
from typing import Any

import nir

DEFAULT_DT = 1e-4
"""Euler step (seconds) when neither the caller nor the file gives one.
snnTorch exports with ``dt = 1e-4`` (``tau = dt/(1-beta)``, ``r = tau/dt``)."""

RESETS = ("subtract", "value", "none")
V_RESET_SINCE = "1.0.6"
NIR_VERSION = str(getattr(nir, "version", getattr(nir, "__version__", "?")))
HAS_V_RESET = "v_reset" in getattr(nir.LIF, "__dataclass_fields__", {})
"""True when the installed nir's spiking nodes carry ``v_reset`` (nir >= 1.0.6)."""


TYPE_CHECKS = "type_check" in inspect.signature(nir.NIRGraph.__init__).parameters
"""nir >= 1.0.5: ``NIRGraph(...)`` and ``nir.read`` check types, and refuse grouped convolutions."""

NIR_TYPES = {
    "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
    "Threshold", "LI", "LIF", "CubaLIF", "IF", "I", "Delay", "Input", "Output", "NIRGraph",
}
"""The NIR node types npuc imports."""

STATELESS = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.Scale, nir.Flatten, nir.SumPool2d, nir.AvgPool2d)
"""NIR nodes without state: a cycle is cut before them (see `feedback_edges`)."""

_IR_NAME = re.compile(r"[^A-Za-z0-9_.:\-]")


def nir_graph(nodes: dict[str, Any], edges: list[tuple[str, str]], metadata: dict | None = None) -> nir.NIRGraph:
    """A `nir.NIRGraph` exactly as given: without the type inference of nir >= 1.0.5,
    which rejects grouped convolutions and adds nodes (see the module docstring)."""
    kw = {"type_check": False} if TYPE_CHECKS else {}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(metadata or {}), **kw)


def has_field(node_type: str | type, fname: str) -> bool:
    """Whether the installed nir's node class has the dataclass field ``fname``."""
    cls = getattr(nir, node_type, None) if isinstance(node_type, str) else node_type
    return cls is not None and fname in {f.name for f in dataclasses.fields(cls)}


def to_str(x: Any) -> str:
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def ir_name(s: str) -> str:
    """A NIR node path as an IR node name."""
    s = _IR_NAME.sub("_", str(s)) or "n"
    return s if s[0] not in ".:-" else "n" + s


def feedback_edges(
    preds: dict[str, list[str]], inputs: Sequence[str], stateless: Collection[str] = ()
) -> list[tuple[str, str]]:
    """Edges ``(dst, src)`` that close cycles: back edges of a depth-first search
    that starts at ``inputs`` (sorted) and visits successors in sorted name order,
    then restarts from any unvisited node (sorted). Deterministic in the names only.

    Each back edge then moves upstream past ``stateless`` nodes (weights, pools,
    reshapes) that have one input and one consumer: ``lif -> w_rec -> lif`` is cut at
    ``lif -> w_rec``, so the recurrent Affine reads the previous step's spikes and its
    bias enters from the first step on (as in snntorch's RSynaptic: ``W s_{t-1} + b``
    with ``s_{-1} = 0``), where a cut at ``w_rec -> lif`` would start from 0, not b.

    The importer puts ``delay=1`` on exactly these edges, and the exporter leaves
    delayed edges as plain NIR edges when they are exactly these."""
    succ: dict[str, list[str]] = {p: [] for p in preds}
    for dst, srcs in preds.items():
        for s in srcs:
            succ.setdefault(s, []).append(dst)
    for s in succ:
        succ[s] = sorted(set(succ[s]))
    state: dict[str, int] = {}  # 1 on stack, 2 done
    back: list[tuple[str, str]] = []
    for root in [*sorted(inputs), *sorted(succ)]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.append((nxt, node))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return [_upstream(dst, src, preds, succ, stateless) for dst, src in back]


def _upstream(dst: str, src: str, preds: dict, succ: dict, stateless: Collection[str]) -> tuple[str, str]:
    """Move the cut edge ``src -> dst`` up a chain of one-input, one-consumer stateless nodes."""
    seen = {dst}
    while src in stateless and src not in seen and len(preds.get(src, [])) == 1 and succ.get(src) == [dst]:
        seen.add(src)
        dst, src = src, preds[src][0]
    return dst, src
