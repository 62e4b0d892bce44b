"""ANN-to-SNN conversion of plain PyTorch ReLU networks (the models hls4ml and FINN users have).

Rate-based conversion with data-based threshold balancing (Diehl et al. 2015; Rueckauer et
al. 2017, robust percentile):

* the input is presented as a constant current at every one of ``T`` steps;
* every ``ReLU`` becomes an IF neuron (no leak) with subtract reset, whose threshold is the
  ``percentile`` of that ReLU's activations on the calibration data (``lambda_l``); each spike
  therefore stands for ``lambda_l`` of activation, and the next weighted layer's weights are
  scaled by ``lambda_l`` (its bias is added every step as it is);
* the last weighted layer feeds IF neurons too (threshold from the ANN's logits), read out
  by spike count, so the class with the most spikes is the ANN's argmax as ``T`` grows;
* BatchNorm stays a node (the fold pass folds it into the layer before it); average pooling
  of spikes is exact; Dropout/Identity vanish; max pooling has no rate equivalent and is refused.

The result is an ordinary float graph: the same passes, backends and verification follow, and
its float engine defines what the SNN computes (its gap to the ANN is the conversion error).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..ir import Graph
from ..ir.ops import LIF, AvgPool2d, BatchNorm, Conv2d, Dense, Input, Output, Reshape
from .builder import f32, sanitize
from .converters.torch_nn import adaptive_kernel
from .errors import FrontendError

_WEIGHTED = (nn.Linear, nn.Conv2d)
_SKIP = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


def ann_to_snn(model: nn.Module, calibration: np.ndarray, steps: int, percentile: float = 99.9,
               name: str | None = None) -> Graph:
    """Convert a ReLU network to a spiking graph (see the module docstring).

    Args:
        model: ``forward(x)`` on ``[B, ...]`` built from Linear, Conv2d, BatchNorm1d/2d, ReLU
            (module or function), AvgPool2d/AdaptiveAvgPool2d, Flatten, Dropout, Identity.
        calibration: ``[N, ...]`` inputs for threshold balancing (a few hundred samples).
        steps: the number of time steps ``T`` the SNN runs.
        percentile: the activation percentile each threshold is set to (robust maximum).
        name: graph name (default: the model's class name).

    Raises:
        FrontendError: an unsupported layer or function, naming it.
    """
    if steps is None:
        raise FrontendError("ANN-to-SNN conversion needs the number of time steps (--steps T); in Python, steps=T")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise FrontendError(f"ANN-to-SNN conversion needs --steps T >= 1, got {steps!r}")
    model = model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 (fx raises many types for untraceable Python)
        raise FrontendError(f"cannot trace {type(model).__name__} with torch.fx: {e}") from None
    x = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
    values = _record(gm, x)
    conv = _Converter(gm, values, steps, percentile, name or type(model).__name__)
    return conv.run(tuple(x.shape[1:]))


def _record(gm: fx.GraphModule, x: torch.Tensor) -> dict[fx.Node, torch.Tensor]:
    """Every node's value on the calibration data."""
    out: dict[fx.Node, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            v = super().run_node(n)
            out[n] = v
            return v

    with torch.no_grad():
        Recorder(gm).run(x)
    return out


class _Converter:
    def __init__(self, gm: fx.GraphModule, values: dict, steps: int, percentile: float, name: str) -> None:
        self.gm, self.values, self.pct = gm, values, percentile
        self.g = Graph(sanitize(name), num_steps=steps)
        self.scale: dict[str, float] = {}  # IR node -> what one unit of its output stands for
        self.names: set[str] = set()

    def run(self, in_shape: tuple[int, ...]) -> Graph:
        env: dict[fx.Node, str] = {}
        last = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if env:
                    raise FrontendError("ANN-to-SNN conversion supports models with one input")
                env[n] = self.g.add("x", Input(in_shape))
                self.scale[env[n]] = 1.0
            elif n.op == "output":
                last = self._output(env[_single(n.args[0])], n)
            else:
                src = env[_single(n.args[0])]
                env[n] = self._node(n, src)
        assert last is not None
        return self.g.verify()

    # -- nodes -----------------------------------------------------------------------
    def _node(self, n: fx.Node, src: str) -> str:
        mod = self.gm.get_submodule(n.target) if n.op == "call_module" else None
        fn = n.target if n.op in ("call_function", "call_method") else None
        if isinstance(mod, _SKIP):
            return src
        if isinstance(mod, nn.ReLU) or fn in (F.relu, torch.relu, "relu"):
            return self._relu(n, src)
        if isinstance(mod, _WEIGHTED):
            return self._weighted(n, mod, src)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            bn = BatchNorm(f32(mod.running_mean, f"{n.target}.running_mean"), f32(mod.running_var, f"{n.target}.running_var"),
                           f32(mod.weight, f"{n.target}.weight"), f32(mod.bias, f"{n.target}.bias"), float(mod.eps))
            return self._add(n, bn, src, self.scale[src])
        if isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self._avgpool(n, mod, src)
        if isinstance(mod, nn.Flatten) or fn in (torch.flatten, "flatten", "view", "reshape"):
            shape = tuple(self.values[n].shape[1:])
            return self._add(n, Reshape(shape), src, self.scale[src])
        what = type(mod).__name__ if mod is not None else getattr(fn, "__name__", str(fn))
        hint = " (max pooling has no rate-coded equivalent: use AvgPool2d)" if isinstance(mod, nn.MaxPool2d) else ""
        raise FrontendError(f"ANN-to-SNN: '{n.name}' ({what}) is not supported{hint}; supported: Linear, Conv2d, "
                            "BatchNorm, ReLU, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Identity")

    def _add(self, n: fx.Node, op, src: str, scale: float) -> str:
        name = self.g.unique_name(sanitize(n.name))
        self.g.add(name, op, [src], meta={"source": f"ann.{n.name}"})
        self.scale[name] = scale
        return name

    def _weighted(self, n: fx.Node, mod: nn.Module, src: str) -> str:
        # a spike of the input population stands for scale[src] of activation
        w = f32(mod.weight, f"{n.target}.weight") * np.float32(self.scale[src])
        b = None if mod.bias is None else f32(mod.bias, f"{n.target}.bias")
        if isinstance(mod, nn.Linear):
            op = Dense(w, b)
        else:
            if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                raise FrontendError(f"ANN-to-SNN: '{n.target}' needs numeric zero padding")
            op = Conv2d(w, b, mod.stride, mod.padding, mod.dilation, mod.groups)
        return self._add(n, op, src, 1.0)

    def _relu(self, n: fx.Node, src: str) -> str:
        lam = self._threshold(n)
        name = self.g.unique_name(sanitize(n.name))
        self.g.add(name, LIF(alpha=1.0, threshold=lam, reset="subtract"), [src], meta={"source": f"ann.{n.name}"})
        self.scale[name] = lam
        return name

    def _avgpool(self, n: fx.Node, mod: nn.Module, src: str) -> str:
        h, w = self.values[_single(n.args[0])].shape[-2:]
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            k = adaptive_kernel(mod, int(h), int(w))
            if k is None:
                raise FrontendError(f"ANN-to-SNN: '{n.target}' on {h}x{w} is not a fixed pool")
            return self._add(n, AvgPool2d(k, k, 0), src, self.scale[src])
        if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override is not None:
            raise FrontendError(f"ANN-to-SNN: '{n.target}' needs ceil_mode=False, count_include_pad=True")
        return self._add(n, AvgPool2d(mod.kernel_size, mod.stride or mod.kernel_size, mod.padding), src,
                         self.scale[src])

    def _threshold(self, n: fx.Node) -> float:
        """The robust maximum of an activation (the percentile of its positive values)."""
        a = self.values[n].detach().numpy().reshape(-1)
        a = a[a > 0]
        lam = float(np.percentile(a, self.pct)) if a.size else 1.0
        return lam if lam > 0 else 1.0

    def _output(self, src: str, n: fx.Node) -> str:
        """Logits become the spike counts of IF neurons (threshold from the logits' range)."""
        if isinstance(self.g[src].op, LIF):
            return self.g.add("out", Output(decoding="sum", layout="B"), [src])
        lif = self.g.unique_name("out_if")
        self.g.add(lif, LIF(alpha=1.0, threshold=self._threshold(_single(n.args[0])), reset="subtract"), [src],
                   meta={"source": "ann.output"})
        return self.g.add("out", Output(decoding="sum", layout="B"), [lif])


def _single(a: Any) -> fx.Node:
    if isinstance(a, (tuple, list)):
        if len(a) != 1:
            raise FrontendError("ANN-to-SNN conversion supports models with one output")
        a = a[0]
    if not isinstance(a, fx.Node):
        raise FrontendError("ANN-to-SNN conversion: a layer's input must be a tensor computed from the input")
    return a


def ann_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """The ANN's own accuracy (argmax of its outputs)."""
    with torch.no_grad():
        out = model.eval()(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    return float((out.argmax(1).numpy() == np.asarray(y)).mean())


def accuracy_vs_steps(model: nn.Module, calibration: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int,
                      percentile: float = 99.9) -> dict[str, Any]:
    """The ANN's accuracy on ``(x, y)`` next to the converted SNN's (float engine) at
    ``T/4, T/2, T, 2T`` steps, thresholds balanced on ``calibration`` each time: how much
    accuracy the conversion costs, and what more or fewer steps would buy.

    Returns ``{"ann_accuracy": a, "steps": T, "samples": n, "snn": [{"steps": t, "accuracy": a_t}, ...]}``.
    """
    from ..sim import simulate

    grid = sorted({max(1, steps // 4), max(1, steps // 2), steps, 2 * steps})
    rows = []
    for t in grid:
        graph = ann_to_snn(model, calibration, t, percentile)
        out = simulate(graph, np.asarray(x, dtype=np.float32), "float").output
        rows.append({"steps": t, "accuracy": float((np.asarray(out).argmax(1) == np.asarray(y)).mean())})
    return {"ann_accuracy": ann_accuracy(model, x, y), "steps": steps, "samples": int(len(y)), "snn": rows}
