"""``npuc export``: a build's float graph as a NIR file or an ONNX model.

The float graph (``DIR/graph/``) is what the source model computes; NIR and the
ONNX npuc form read back into the same graph (`npuc.frontends.nir_import`,
`npuc.frontends.onnx_import`). ``--runtime`` writes the ONNX form onnxruntime
executes (`npuc.frontends.onnx_runtime`). Every writer renames a finished
temporary file into place, so a failed export leaves no partial file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .builddir import BuildDir, display_path
from .errors import UserError

FORMATS = ("nir", "onnx")


def export_build(build: str | Path, fmt: str, out: str | Path, runtime: bool = False, dt: float | None = None) -> Path:
    """Write build ``build``'s float graph to ``out`` as ``fmt`` (``nir`` or ``onnx``)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if runtime and fmt != "onnx":
        raise UserError("--runtime applies to --format onnx only (NIR has no runtime form)")
    if dt is not None and fmt != "nir":
        raise UserError("--dt applies to --format nir only")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {display_path(out)} is a directory; give a file name (e.g. model.{fmt})")
    graph = BuildDir(build).float_graph()
    if fmt == "nir":
        from .frontends.nir_export import DEFAULT_DT, write_nir

        return write_nir(graph, out, dt=DEFAULT_DT if dt is None else dt)
    from .frontends.onnx_export import export_onnx

    return export_onnx(graph, out, runtime=runtime)


def export_cli(args: argparse.Namespace) -> int:
    path = export_build(args.dir, args.format, args.out, args.runtime, args.dt)
    form = " (runtime form: standard operators, state as inputs/outputs)" if args.runtime else ""
    print(f"wrote {display_path(path)}{form}", file=sys.stderr)
    return 0
