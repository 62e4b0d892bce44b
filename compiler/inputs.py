"""Reading user data files (inputs, labels) and writing engine outputs, for the CLI and the API.

Every problem is an `InputError` / `UserError` naming the file and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UserError


def load_inputs(path: str, mmap: bool = False) -> list[np.ndarray]:
    """Arrays from ``.npy`` (one input) or ``.npz`` (inputs in key order ``arr_0, arr_1, ...``
    or ``x0, x1, ...``). ``mmap``: map a ``.npy`` read-only instead of reading it (a data set
    larger than memory is then read slice by slice, by the checks here and by chunked simulation)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: input file not found")
    try:
        data = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a numpy .npy/.npz file ({e})") from None
    if isinstance(data, np.ndarray):
        arrays, names = [data], [p.name]
    else:
        keys = sorted(data.files, key=lambda k: (len(k), k))
        arrays, names = [data[k] for k in keys], [f"{p.name}[{k}]" for k in keys]
    for a, name in zip(arrays, names):
        check_array(a, name)
    return arrays


def as_arrays(value: Any, name: str, finite: bool = True) -> list[np.ndarray]:
    """What the Python API takes as model inputs (an array or torch tensor, or a tuple of them,
    one per model input), as checked numpy arrays; errors name the argument. ``finite=False``
    leaves the NaN check to the simulator's encoder, whose error names the graph input."""
    items = list(value) if isinstance(value, tuple) else [value]
    out = []
    for i, v in enumerate(items):
        where = name if len(items) == 1 else f"{name}[{i}]"
        if v is None:
            raise InputError(f"{where} is None: give an array shaped like what the model's forward takes")
        a = _to_numpy(v)
        check_array(a, where, finite)
        out.append(a)
    return out


def _to_numpy(v: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return v.detach().cpu().numpy()
    except ImportError:
        pass
    try:
        return np.asarray(v)
    except (ValueError, TypeError) as e:
        raise InputError(f"cannot convert {type(v).__name__} to an array: {e}") from None


def check_array(a: np.ndarray, name: str, finite: bool = True) -> None:
    """Numeric, non-empty and (unless ``finite=False``) finite; errors name the array."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise InputError(f"{name}: dtype {getattr(a, 'dtype', type(a).__name__)} is not numeric")
    if a.size == 0:
        raise InputError(f"{name}: empty array (shape {list(a.shape)})")
    if finite and a.dtype.kind == "f":
        # slice by slice along the first axis: a memory-mapped array is never read whole
        step = max(1, (1 << 24) // max(1, a[:1].size))
        bad = sum(int((~np.isfinite(a[i:i + step])).sum()) for i in range(0, len(a), step))
        if bad:
            raise InputError(f"{name}: {bad} NaN or infinite value(s); inputs must be finite")


def load_labels(path: str, count: int | None) -> np.ndarray:
    """Integer class labels, one per calibration sample."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: labels file not found")
    try:
        y = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a numpy .npy file ({e})") from None
    return check_labels(y, count, str(p))


def load_labels_for(path: str, graph: Any, xs: Sequence[np.ndarray]) -> np.ndarray:
    """``--labels`` of ``simulate``/``verify``: one label per sample of ``xs``, each a class index of
    the graph's first output."""
    classes = int(np.prod(graph.outputs()[0].shape))
    return check_labels(load_labels(path, batch_size(graph, xs)), None, path, classes)


def check_labels(y: Any, count: int | None, name: str, classes: int | None = None) -> np.ndarray:
    """Labels as int64 class indices: 1-D, integers, ``0 <= y < classes``, one per sample."""
    y = _to_numpy(y) if y is not None else y
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "biu" and not (
            y.dtype.kind == "f" and np.isfinite(y).all() and np.array_equal(y, np.round(y))):
        raise InputError(f"{name}: labels must be a 1-D array of integer class indices"
                         + (f", got shape {list(y.shape)} dtype {y.dtype}" if isinstance(y, np.ndarray) else ""))
    if count is not None and len(y) != count:
        raise InputError(f"{name}: {len(y)} labels for {count} calibration samples")
    if len(y) and y.min() < 0:
        raise InputError(f"{name}: labels must be class indices >= 0 (found {int(y.min())})")
    if classes is not None and len(y) and y.max() >= classes:
        raise InputError(f"{name}: label {int(y.max())} is not a class index of the model's {classes} outputs")
    return y.astype(np.int64)


def accuracy(out: np.ndarray, op: Any, labels: np.ndarray) -> float:
    """Fraction of samples whose output (summed over time for a ``sequence`` output) peaks
    at the label's class; ``op`` is the graph's `Output` op."""
    o = np.asarray(out, dtype=np.float64)
    if op.decoding == "sequence":
        o = o.sum(0) if op.layout == "TB" else o.sum(1)
    o = o.reshape(o.shape[0], -1)
    return round(float(np.mean(o.argmax(1) == np.asarray(labels).reshape(-1))), 5)


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
