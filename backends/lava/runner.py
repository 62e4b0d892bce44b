"""Run emitted Lava artifacts on user inputs, and build live Lava processes from a graph.

`run` encodes user inputs exactly as npuc's golden engines do (`npuc.sim.encoding`),
runs the emitted module in Lava's fixed_pt simulator, and returns a `SimResult`
in the golden engines' logical-time ``[T, B, ...]`` layout.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ...errors import LavaArtifactError, ToolchainError, UserError
from ...ir.graph import Graph
from ...ir.ops import Input, Output
from ...ir.values import Encoding, QInput
from ...sim.encoding import InputError, decode, encode, to_time_major
from ...sim.engine import SimResult

_counter = itertools.count()




def _manifest(artifact_dir: Path) -> dict:
    path = artifact_dir / "network.json"
    if not path.is_file():
        raise LavaArtifactError(f"{path}: not found (emit the Lava backend first: npuc compile --target loihi2)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LavaArtifactError(f"{path}: not valid JSON ({e})") from None
    if doc.get("format") != "npuc-lava" or doc.get("version") != 1:
        raise LavaArtifactError(f"{path}: not an npuc Lava manifest (format {doc.get('format')!r}, "
                                f"version {doc.get('version')!r})")
    return doc


def _let_lava_choose_fork() -> None:
    """Lava's runtime calls ``multiprocessing.set_start_method('fork')`` when first imported and
    fails if anything fixed the start method before (tqdm's first progress bar does, through a
    multiprocessing lock). Unset a prior choice so Lava can make its own."""
    import multiprocessing

    if ("lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules
            and multiprocessing.get_start_method(allow_none=True) is not None):
        multiprocessing.set_start_method(None, force=True)


def _inside(artifact_dir: Path, doc: dict, key: str, suffix: str) -> Path:
    """The file ``network.json`` names under ``key``: a plain file name in the ``lava/`` folder
    (never a path elsewhere: the module is imported and executed)."""
    name = doc.get(key)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+" + re.escape(suffix), name):
        raise LavaArtifactError(f"{artifact_dir / 'network.json'}: field '{key}' must name a {suffix} file inside "
                                f"{artifact_dir}, got {name!r}")
    path = artifact_dir / name
    if path.is_symlink() or path.resolve().parent != artifact_dir.resolve():
        raise LavaArtifactError(f"{path}: resolves outside {artifact_dir}; refusing to import it")
    return path


def load_module(artifact_dir: str | Path) -> ModuleType:
    """Import the emitted module of a ``lava/`` folder (fresh each call)."""
    _let_lava_choose_fork()
    artifact_dir = Path(artifact_dir)
    doc = _manifest(artifact_dir)
    path = _inside(artifact_dir, doc, "module", ".py")
    params = _inside(artifact_dir, doc, "params", ".npz")
    for f in (path, params):
        if not f.is_file():
            raise LavaArtifactError(f"{f}: not found; re-emit the Lava backend (npuc compile --target loihi2)")
    try:
        with np.load(params, allow_pickle=False) as data:
            for key in data.files:
                data[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise LavaArtifactError(f"{params}: unreadable ({type(e).__name__}: {e}); recompile the build") from None
    name = f"npuc_lava_generated_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LavaArtifactError(f"{path}: cannot be imported")
    mod = importlib.util.module_from_spec(spec)
    # Lava's compiler looks a process's models up through sys.modules[cls.__module__] (the custom
    # NpucNeuron process is defined in the module itself)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _input_op(d: dict) -> Input:
    q = None if d["q"] is None else QInput(**d["q"])
    return Input(tuple(d["shape"]), Encoding(**d["encoding"]), d["layout"], d["index"], q)


def encode_inputs(doc: dict, inputs: Any) -> tuple[list[np.ndarray], int]:
    """User inputs -> per-step integers ``[T, B, ...]`` per graph input (npuc's integer encoders)."""
    specs = sorted(doc["inputs"], key=lambda d: d["index"])
    xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(xs) != len(specs):
        raise InputError(f"graph '{doc['graph']}' takes {len(specs)} input(s), got {len(xs)}")
    out = []
    steps = None
    for d, x in zip(specs, xs):
        op = _input_op(d)
        tm, steps = to_time_major(d["node"], op, x, doc["num_steps"])
        v = encode(op, tm, steps, "int").cpu().numpy().astype(np.int64)
        if not d["graded"] and not np.isin(v, (0, 1)).all():
            raise InputError(f"input '{d['node']}' ({d['encoding']['kind']}) feeds Lava as binary spikes: "
                             "values must be 0 or 1")
        out.append(v)
    return out, int(steps or 0)


def run(artifact_dir: str | Path, inputs: Any, probe: bool | Sequence[str] = False,
        waves: bool = False) -> SimResult:
    """Run emitted Lava artifacts on user inputs in Lava's fixed_pt simulator.

    Args:
        artifact_dir: the ``lava/`` folder written by `emit`.
        inputs: what the model takes (one array, or one per input in index order), in
            each input's layout; encoded with npuc's integer encoders.
        probe: also return the ``spikes``, ``v`` and ``i`` (Lava's ``u``) of every neuron (True) or
            of the named neuron nodes (a list; other names are ignored, as in the golden engines).
        waves: not available for Lava (waveforms come from the rtl engine).

    Returns:
        `SimResult` with decoded outputs and, with ``probe``, traces ``{neuron: {port: [T, B, ...]}}``,
        all in npuc's logical time (Lava's synapse delays and batching undone).
    """
    if waves:
        raise UserError("waveforms come from the rtl engine; the lava engine has none (drop --waves)")
    t0 = time.perf_counter()
    artifact_dir = Path(artifact_dir)
    doc = _manifest(artifact_dir)
    xs, steps = encode_inputs(doc, inputs)
    mod = load_module(artifact_dir)
    try:
        if probe:
            nodes = None if probe is True else [n for n in probe if n in mod.PROBES]
            outs, traces = mod.trace(xs, nodes=nodes)
        else:
            outs, traces = mod.run(xs), None
    except RuntimeError as e:
        if "Exception(s) occurred" not in str(e):
            raise
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise ToolchainError(f"Lava's simulator failed in {artifact_dir}: {lines[0].split('.')[0]} in its process "
                             f"models; the last line reported: {lines[-1].strip() if len(lines) > 1 else 'none'}") from e
    outputs, names = [], []
    for o in sorted(doc["outputs"], key=lambda d: d["index"]):
        op = Output(o["decoding"], o["layout"], o["index"])
        outputs.append(decode(op, torch.from_numpy(outs[o["node"]])).cpu().numpy())
        names.append(o["node"])
    return SimResult(outputs, names, steps, traces, {"lava": lava_timing(getattr(mod, "TIMING", {}))},
                     time.perf_counter() - t0)


def lava_timing(timing: dict) -> dict[str, int]:
    """The generated module's ``TIMING`` as integer counters: Lava ``steps`` run, microseconds of
    process ``build_us`` (processes created, then Lava's compile, runtime start and first step),
    ``steady_us`` (the other steps) and ``readout_us``, and the steady ``steps_per_s``."""
    if not timing:
        return {}
    us = lambda s: int(round(s * 1e6))  # noqa: E731
    steady = timing["steady"]
    out = {"steps": int(timing["steps"]), "build_us": us(timing["build"] + timing["first_step"]),
           "steady_us": us(steady), "readout_us": us(timing["readout"])}
    if steady > 0 and timing["steps"] > 1:
        out["steps_per_s"] = int(round((timing["steps"] - 1) / steady))
    return out


def build_network(graph: Graph, inputs: Any = None, probe: bool = False) -> Any:
    """Live Lava processes for a quantized graph, to compose with your own processes.

    Args:
        graph: a quantized graph (profile loihi2).
        inputs: user inputs (encoded with npuc's integer encoders); default: the bundled example.
        probe: attach readers for the spikes, ``v`` and ``u`` of every neuron (True) or of the
            listed neuron nodes.

    Returns:
        The generated module's ``Network`` (``.sources``, ``.neurons``, ``.synapses``, ``.resets``,
        ``.readers``, ``.processes``, ``.steps``), built by the same code `emit` writes; call
        ``run(condition=RunSteps(num_steps=net.steps), run_cfg=...)`` on one of its processes.
    """
    from .artifacts import artifacts

    _, files = artifacts(graph)
    tmp = Path(tempfile.mkdtemp(prefix="npuc-lava-build-"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        doc = _manifest(tmp)
        xs = None if inputs is None else encode_inputs(doc, inputs)[0]
        mod = load_module(tmp)
        return mod.build(xs, probe=probe)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
