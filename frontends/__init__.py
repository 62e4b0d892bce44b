"""npuc frontends: trained PyTorch spiking models (snntorch, SpikingJelly, norse,
sinabs, `npuc.nn`), NIR and ONNX files -> a verified float IR graph.

* `load_model` is what ``npuc compile MODEL`` calls.
* `trace` converts a live ``nn.Module`` for Python users.

The float graph reproduces the model's forward in eval mode, from the
libraries' reset state, spike for spike (see ``docs/frontends.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..ir.graph import Graph
from .errors import FrontendError, LayoutError, UnsupportedModuleError

__all__ = ["load_model", "trace", "graph_name", "FrontendError", "LayoutError", "UnsupportedModuleError"]


def load_model(
    spec: str,
    checkpoint: str | None = None,
    example_input: list[np.ndarray] | None = None,
    trust_checkpoint: bool = False,
    steps: int | None = None,
    *,
    dt: float | None = None,
    reset: str | None = None,
    ann: bool = False,
    calibration: list[np.ndarray] | None = None,
) -> Graph:
    """Import a model as a verified float graph.

    Args:
        spec: ``path/file.py:factory``, ``package.module:factory`` (a callable
            returning an ``nn.Module``, or an ``nn.Module`` attribute), a ``.nir``
            file or an ``.onnx`` file.
        checkpoint: state_dict file, loaded with ``torch.load(weights_only=True)``.
        example_input: the arrays the model's ``forward`` takes (one per argument).
        trust_checkpoint: allow a checkpoint that needs arbitrary pickled classes.
        steps: time steps for a model whose forward takes no time axis.
        dt, reset: ``.nir`` files only: the Euler step in seconds and the neuron
            reset override (see `npuc.frontends.nir_import.import_nir`).
        ann: the model is a ReLU network (no time axis): convert it to an SNN of ``steps``
            steps with thresholds balanced on ``calibration`` (or the example input), see
            `npuc.frontends.ann.ann_to_snn`.

    Raises:
        FrontendError: unreadable model or checkpoint, or an unsupported construct.
    """
    lower = spec.lower()
    if lower.endswith(".nir"):
        from .nir_import import import_nir

        return import_nir(spec, dt=dt, steps=steps, reset=reset)
    if dt is not None or reset is not None:
        given = [f for f, v in (("dt", dt), ("reset", reset)) if v is not None]
        verb = "apply" if len(given) > 1 else "applies"
        raise FrontendError(f"model '{spec}': {' and '.join(given)} {verb} to NIR models (.nir) only")
    if ann:
        from .ann import ann_to_snn

        data = calibration or example_input
        if not data:
            raise FrontendError(f"model '{spec}': ANN-to-SNN conversion needs an example input (--example-input)")
        if len(data) != 1:
            raise FrontendError(f"model '{spec}': ANN-to-SNN conversion supports models with one input")
        model = load_ann(spec, checkpoint, trust_checkpoint)
        name = Path(spec).stem if lower.endswith(".onnx") else graph_name(model, spec.rpartition(":")[2])
        graph = ann_to_snn(model, data[0], steps, name=name)
        graph.meta["source"] = {"model": spec, "ann_to_snn": True,
                                **({"checkpoint": checkpoint} if not lower.endswith(".onnx") else {})}
        return graph
    if lower.endswith(".onnx"):
        from .onnx_import import import_onnx

        return import_onnx(spec, steps=steps)
    from .loading import import_factory, load_checkpoint

    model = import_factory(spec)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, trust_checkpoint)
    if example_input is None:
        raise FrontendError(f"model '{spec}': tracing a PyTorch model needs an example input (--example-input)")
    graph = trace(model, example_input, steps=steps, name=graph_name(model, spec.rpartition(":")[2]))
    graph.meta["source"] = {"model": spec, "checkpoint": checkpoint}
    return graph


def load_ann(spec: str, checkpoint: str | None = None, trust_checkpoint: bool = False) -> torch.nn.Module:
    """The ReLU network a spec names: an ``.onnx`` file or a PyTorch factory (+ checkpoint)."""
    if spec.lower().endswith(".onnx"):
        from .onnx_ann import onnx_relu_model

        return onnx_relu_model(spec)
    from .loading import import_factory, load_checkpoint

    model = import_factory(spec)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, trust_checkpoint)
    return model


def trace(model: torch.nn.Module, example_input: Any, steps: int | None = None, name: str | None = None) -> Graph:
    """Convert a PyTorch spiking model to a float IR graph.

    The model is put in eval mode (SpikingJelly runs different formulas in
    train and eval mode; npuc compiles eval) and its library state is reset.

    Args:
        model: the model, with its weights.
        example_input: a tensor/array or a sequence of them, exactly what
            ``model(...)`` takes; its shapes fix the batch and time axes.
        steps: time steps for a model whose forward takes no time axis.
        name: graph name (default: `graph_name` of the model).

    Returns:
        A verified `Graph` whose float simulation equals ``model(*example_input)``.
    """
    from .convert import convert
    from .state import reset_library_state
    from .tracing import trace_model

    if not isinstance(model, torch.nn.Module):
        raise FrontendError(f"trace() needs an nn.Module, got {type(model).__name__}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise FrontendError(f"steps must be a positive integer, got {steps!r}")
    inputs = _as_tensors(example_input)
    model.eval()
    reset_library_state(model)
    try:
        gm, values, names = trace_model(model, inputs)
        graph = convert(model, gm.graph, values, name or graph_name(model), steps, names)
    finally:
        reset_library_state(model)
    graph.meta["frontend"] = {"torch": torch.__version__, "mode": "eval"}
    return graph


GENERIC_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict", "SequentialState", "SeqToANNContainer")


def graph_name(model: torch.nn.Module, factory: str | None = None) -> str:
    """The one naming rule for graphs (and the hardware built from them), CLI and API alike:
    the model's class name, unless that is a generic container (``nn.Sequential``...), in
    which case the factory's name (CLI ``file.py:factory``), else ``net``."""
    cls = type(model).__name__
    if cls not in GENERIC_CONTAINERS:
        return cls
    return factory or "net"


def _as_tensors(x: Any) -> list[torch.Tensor]:
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    out = []
    for i, a in enumerate(items):
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a))
        if not isinstance(a, torch.Tensor):
            raise FrontendError(f"example input {i} is a {type(a).__name__}, not an array or tensor")
        if a.is_floating_point() and a.dtype != torch.float32:
            a = a.to(torch.float32)
        out.append(a.detach())
    return out
