"""Save and load graphs: ``graph.json`` (structure, parameters) + ``tensors.npz`` (arrays).

The JSON tags every dataclass with ``$type`` and every tuple with ``$tuple`` so
that a round trip rebuilds identical objects; arrays are referenced by key into
the ``.npz``. Writes go to a temporary directory that is renamed into place, so
a failed save never leaves half-written output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphFileError  # noqa: F401  (re-exported)
from .graph import Graph, GraphError, Node, Ref
from .ops import OP_TYPES
from .values import VALUE_TYPES, NumericProfile

FORMAT = "npuc-graph"
VERSION = 1
GRAPH_FILE = "graph.json"
TENSOR_FILE = "tensors.npz"


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"$array": key}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"$type": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _encode(getattr(value, f.name), f"{key}.{f.name}", arrays)
        return out
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"{key}: dict keys must be strings, got {k!r}")
        return {k: _encode(v, f"{key}.{k}", arrays) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key}: cannot serialize a {type(value).__name__}")


def _decode(obj: Any, where: str, arrays: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v, where, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "$array" in obj:
        key = obj["$array"]
        if key not in arrays:
            raise GraphFileError(f"{where}: array '{key}' is missing from {TENSOR_FILE}")
        return np.asarray(arrays[key])
    if "$tuple" in obj:
        return tuple(_decode(v, where, arrays) for v in obj["$tuple"])
    if "$type" in obj:
        tname = obj["$type"]
        cls = OP_TYPES.get(tname) or VALUE_TYPES.get(tname)
        if cls is None:
            raise GraphFileError(f"{where}: unknown type '{tname}' (written by a newer npuc?)")
        kwargs = {k: _decode(v, f"{where}.{k}", arrays) for k, v in obj.items() if k != "$type"}
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(kwargs) - names
        if extra:
            raise GraphFileError(f"{where}: unknown field(s) {sorted(extra)} for {tname}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise GraphFileError(f"{where} ({tname}): {e}") from None
    return {k: _decode(v, f"{where}.{k}", arrays) for k, v in obj.items()}


def graph_to_json(graph: Graph) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the arrays describing ``graph``."""
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for n in graph:
        nodes.append(
            {
                "name": n.name,
                "op": _encode(n.op, f"{n.name}", arrays),
                "inputs": [{"node": r.node, "port": r.port, "delay": r.delay} for r in n.inputs],
                "meta": _encode(n.meta, f"{n.name}.meta", arrays),
            }
        )
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "num_steps": graph.num_steps,
        "profile": _encode(graph.profile, "profile", arrays),
        "meta": _encode(graph.meta, "meta", arrays),
        "nodes": nodes,
    }
    return doc, arrays


def save_graph(graph: Graph, directory: str | os.PathLike) -> None:
    """Write ``graph`` to ``directory`` atomically (replacing an older graph there)."""
    graph.verify()
    doc, arrays = graph_to_json(graph)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".npuc-tmp-", dir=directory.parent))
    try:
        (tmp / GRAPH_FILE).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        write_npz(tmp / TENSOR_FILE, arrays)
        if directory.exists():
            for f in (GRAPH_FILE, TENSOR_FILE):
                os.replace(tmp / f, directory / f)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


NARROWED = "__narrowed__"  # "name:dtype" of every integer array stored in a narrower type


def _narrow(a: np.ndarray) -> np.ndarray:
    """An integer array in the narrowest signed type that holds its values (quantized weights are
    8-16 bit values in int64: 8x the bytes to compress)."""
    if a.dtype.kind != "i" or a.size < 1024:
        return a
    lo, hi = int(a.min()), int(a.max())
    for t in (np.int8, np.int16, np.int32):
        if np.dtype(t).itemsize < a.dtype.itemsize and np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return a.astype(t)
    return a


def write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """A deterministic ``.npz`` (sorted keys, fixed zip timestamps; ``np.savez`` stamps the time) to
    a path or binary file. Integer arrays are stored narrow and listed under `NARROWED` (readers
    widen them back: `read_npz`); large float arrays are stored uncompressed (weights barely
    compress: 7 % on sew_resnet18, where deflating them took most of the compile time)."""
    stored = {k: _narrow(np.asarray(a)) for k, a in arrays.items()}
    narrowed = sorted(f"{k}:{np.asarray(arrays[k]).dtype.str}" for k in arrays
                      if stored[k].dtype != np.asarray(arrays[k]).dtype)
    if narrowed:
        stored[NARROWED] = np.array(narrowed)
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(stored):
            a = np.asarray(stored[key], order="C")
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if a.dtype.kind == "f" and a.nbytes > 1 << 16 \
                else zipfile.ZIP_DEFLATED
            info._compresslevel = 1  # level 6 (the default): 3x slower for 2 % fewer bytes
            with zf.open(info, "w") as out:
                np.lib.format.write_array(out, a, allow_pickle=False)


def read_npz(path) -> dict[str, np.ndarray]:
    """The arrays `write_npz` wrote, with their original dtypes."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for entry in arrays.pop(NARROWED, np.array([], dtype=str)).tolist():
        key, dtype = entry.rsplit(":", 1)
        arrays[key] = arrays[key].astype(dtype)
    return arrays


def load_graph(directory: str | os.PathLike) -> Graph:
    """Read a graph directory written by `save_graph`.

    Raises:
        GraphFileError: missing files, malformed JSON, a foreign format, unknown
            types or fields, missing arrays, or parameters that fail validation;
            the message names the file and the node/field.
    """
    directory = Path(directory)
    jpath, tpath = directory / GRAPH_FILE, directory / TENSOR_FILE
    if not jpath.is_file():
        raise GraphFileError(f"{jpath}: not found (is '{directory}' an npuc graph directory?)")
    try:
        doc = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GraphFileError(f"{jpath}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GraphFileError(f"{jpath}: not an npuc graph (format tag is {doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise GraphFileError(f"{jpath}: graph format version {doc.get('version')} is not supported (expected {VERSION})")
    try:
        arrays = read_npz(tpath) if tpath.exists() else {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise GraphFileError(f"{tpath}: cannot read arrays ({e})") from None
    try:
        g = Graph(doc["name"], doc["num_steps"])
        g.profile = _decode(doc.get("profile"), "profile", arrays)
        if g.profile is not None and not isinstance(g.profile, NumericProfile):
            raise GraphFileError(f"{jpath}: field 'profile' is not a NumericProfile")
        g.meta = _decode(doc.get("meta", {}), "meta", arrays)
        for nd in doc["nodes"]:
            where = f"{jpath}: node '{nd.get('name')}'"
            op = _decode(nd["op"], where, arrays)
            refs = tuple(Ref(r["node"], r["port"], r["delay"]) for r in nd["inputs"])
            node = Node(nd["name"], op, refs, _decode(nd.get("meta", {}), where + " meta", arrays))
            if node.name in g._nodes:
                raise GraphFileError(f"{where}: duplicate node name")
            g._nodes[node.name] = node
            g._nx.add_node(node.name)
        for node in g._nodes.values():
            for i, r in enumerate(node.inputs):
                g._nx.add_edge(r.node, node.name, key=i, port=r.port, delay=r.delay)
        g.verify()
    except GraphFileError:
        raise
    except GraphError as e:
        raise GraphFileError(f"{jpath}: {e}") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise GraphFileError(f"{jpath}: malformed graph document ({type(e).__name__}: {e})") from None
    return g
