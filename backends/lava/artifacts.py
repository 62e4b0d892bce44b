"""``emit``: write a quantized graph's Lava artifacts into a build directory's ``lava/`` folder.

Files (all deterministic: emitting twice gives byte-identical files):

* ``<graph>_lava.py``: standalone Lava module (lava-nc + numpy only), see the template;
* ``<graph>_lava.npz``: its weights, index tables and example input;
* ``network.json``: inputs/outputs for `npuc.backends.lava.run` and a summary of the mapping;
* ``network.net``: lava-dl netx HDF5 of the representable layers;
* ``README.md``: how to run it, and which layers netx cannot represent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ...errors import NpucWarning
from ...ir.graph import Graph
from . import stock_only
from .lowering import lower
from .netx import netx_bytes
from .render import CHIP_NOTE, custom_processes, manifest, npz_bytes, render
from .spec import NetworkSpec


class LavaBackendWarning(NpucWarning):
    """Layers the netx export cannot represent (the Lava module itself is exact or refused)."""


def artifacts(graph: Graph, version: str | None = None, custom: bool = True) -> tuple[NetworkSpec, dict[str, bytes]]:
    """Lower ``graph`` and produce every file's bytes (no file is written).

    ``version`` is the npuc version written into the generated module (default: the installed
    distribution's); the compiler driver passes its own. ``custom=False`` refuses neurons that
    need npuc's custom process (the loihi2 options ``stock_only`` and ``netx``).
    """
    spec = lower(graph, custom)
    text, arrays = render(spec, version or _installed_version())
    net, report = netx_bytes(spec)
    files = {
        f"{spec.ident}.py": text.encode(),
        f"{spec.ident}.npz": npz_bytes(arrays),
        "network.json": manifest(spec, report).encode(),
        "network.net": net,
        "README.md": _readme(spec, report).encode(),
    }
    return spec, files


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("npuc")
    except PackageNotFoundError:
        return "unknown"


def emit(graph: Graph, out_dir: str | os.PathLike, target: Any = None, version: str | None = None) -> list[Path]:
    """Write the Lava artifacts of a quantized graph (profile loihi2) into ``out_dir``.

    Args:
        graph: a quantized graph (``graph.profile`` is Lava's numeric profile).
        out_dir: the folder to write (created or replaced as a whole, atomically).
        target: the `npuc.targets.Target` compiled for (its profile must be the graph's).
        version: the npuc version recorded in the generated module.

    Returns:
        The written files, in a fixed order.

    Raises:
        LavaMappingError: a node, op or parameter without an exact Lava mapping.
    """
    if target is not None and getattr(target, "profile", None) is not None and graph.profile is not None \
            and target.profile.name != graph.profile.name:
        from .spec import LavaMappingError

        raise LavaMappingError(f"graph '{graph.name}' is quantized for '{graph.profile.name}', not for target "
                               f"'{target.profile.name}'")
    opts = getattr(target, "options", {}) if target is not None else {}
    _, files = artifacts(graph, version, custom=not stock_only(opts))
    report = _netx_report(files)
    if report["not_representable"]:
        left = ", ".join(f"'{x['node']}' ({x['reason']})" for x in report["not_representable"])
        if opts.get("netx"):  # the user asked for a complete netx file
            from .spec import LavaMappingError

            raise LavaMappingError(f"--target {target.spec}: netx cannot represent {left}")
        # One short line: the reasons (often several lines each) are in lava/README.md and network.json,
        # and the Lava module runs every layer, so only netx users need to act.
        names = [f"'{x['node']}'" for x in report["not_representable"]]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        warnings.warn(f"network.net (lava-dl netx) holds {len(report['layers'])} layer(s); netx cannot represent "
                      f"{shown} (why: lava/README.md; the Lava module runs every layer; `--target loihi2:netx=1` "
                      "asks for a complete netx file)", LavaBackendWarning, stacklevel=2)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".npuc-lava-", dir=out.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=".npuc-lava-old-", dir=out.parent))
            os.replace(out, old / "lava")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in files]


def _netx_report(files: dict[str, bytes]) -> dict:
    import json

    return json.loads(files["network.json"])["netx_layers"]


def _readme(spec: NetworkSpec, report: dict) -> str:
    mod = f"{spec.ident}.py"
    lines = [
        f"# Lava network for graph '{spec.name}' (generated by npuc)",
        "",
        "| File | What |",
        "|---|---|",
        f"| `{mod}` | Lava processes (`build`, `run`, `trace`); `python {mod}` runs the bundled example |",
        f"| `{spec.ident}.npz` | weights, index tables, example input |",
        "| `network.json` | inputs/outputs for `npuc simulate --engine lava`, mapping summary |",
        "| `network.net` | lava-dl netx HDF5 of the layers netx can represent |",
        "",
        "Run in Lava's bit-accurate CPU simulator (`Loihi2SimCfg(select_tag='fixed_pt')`, lava-nc + numpy only):",
        "",
        "```",
        f"python {mod}",
        "```",
        "",
        "Inputs to `run(x)` are per-step integers `[T, B, ...]` (graded currents or 0/1 spikes); npuc encodes",
        "user inputs for you in `npuc simulate BUILD --engine lava`.",
        "",
        "## netx export (`network.net`)",
        "",
    ]
    if report["layers"]:
        lines.append("Layers written: " + ", ".join(f"`{n}`" for n in report["layers"]) + ".")
        lines += ["", "Load with lava-dl (not an npuc dependency):", "", "```", f"{report['load']}", "```", "",
                  "`reset_offset=1` because the input is a RingBuffer without an input neuron block."]
    else:
        lines.append("No layer is representable in netx; the file holds an empty `layer` group.")
    if report["not_representable"]:
        lines += ["", "**Not representable in netx** (run them through the Lava module instead):", ""]
        lines += [f"- `{x['node']}`: {x['reason']}" for x in report["not_representable"]]
    custom = custom_processes(spec)
    if custom:
        lines += ["", "## Custom processes", "", CHIP_NOTE, ""]
        lines += [f"- `{c['node']}` ({c['process']}): {'; '.join(c['needs'])}" for c in custom]
    return "\n".join(lines) + "\n"
