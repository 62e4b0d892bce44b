"""Reading user data files (inputs, labels) and writing engine outputs, for the CLI and the API.

Every problem is an `InputError` / `UserError` naming the file and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import UserError


def load_inputs(path: str) -> list[np.ndarray]:
    """Arrays from ``.npy`` (one input) or ``.npz`` (inputs in key order ``arr_0, arr_1, ...``
    or ``x0, x1, ...``)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: input file not found")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a numpy .npy/.npz file ({e})") from None
    if isinstance(data, np.ndarray):
        arrays, names = [data], [p.name]
    else:
        keys = sorted(data.files, key=lambda k: (len(k), k))
        arrays, names = [data[k] for k in keys], [f"{p.name}[{k}]" for k in keys]
    for a, name in zip(arrays, names):
        if a.dtype.kind not in "biuf":
            raise UserError(f"{name}: dtype {a.dtype} is not numeric")
        if a.size == 0:
            raise UserError(f"{name}: empty array (shape {list(a.shape)})")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise UserError(f"{name}: {int((~np.isfinite(a)).sum())} NaN or infinite value(s); inputs must be finite")
    return arrays


def load_labels(path: str, count: int | None) -> np.ndarray:
    """Integer class labels, one per calibration sample."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: labels file not found")
    try:
        y = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a numpy .npy file ({e})") from None
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "biu" and not (
            y.dtype.kind == "f" and np.isfinite(y).all() and np.array_equal(y, np.round(y))):
        raise UserError(f"{p}: labels must be a 1-D array of integer class indices"
                        + (f", got shape {list(y.shape)} dtype {y.dtype}" if isinstance(y, np.ndarray) else ""))
    if count is not None and len(y) != count:
        raise UserError(f"{p}: {len(y)} labels for {count} calibration samples")
    if len(y) and y.min() < 0:
        raise UserError(f"{p}: labels must be class indices >= 0 (found {int(y.min())})")
    return y.astype(np.int64)


def check_output_path(path: str | None) -> None:
    """Fail before a long run if ``--out`` cannot name an output file."""
    if path is not None and Path(path).suffix not in (".npy", ".npz"):
        raise UserError(f"{path}: give a .npy (or .npz) path for --out")


def save_outputs(path: str, names: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
    """One output -> ``.npy``; several -> ``.npz`` keyed by output node name."""
    p = Path(path)
    check_output_path(path)
    if len(arrays) > 1 and p.suffix != ".npz":
        raise UserError(f"the graph has {len(arrays)} outputs: give an .npz path for --out")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".npy":
            np.save(p, arrays[0])
        else:
            np.savez(p, **dict(zip(names, arrays)))
    except OSError as e:
        raise UserError(f"{p}: cannot write ({e.strerror or e})") from None


def batch_size(graph, xs: Sequence[np.ndarray]) -> int:
    """The batch size of user inputs for ``graph`` (the first input decides)."""
    op = graph.inputs()[0].op
    return int(xs[0].shape[1] if op.layout == "TB" else xs[0].shape[0])
