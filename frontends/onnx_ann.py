"""ONNX ReLU networks (``torch.onnx.export``, hls4ml / FINN flows) for ANN-to-SNN conversion.

A chain of Gemm / MatMul(+Add), Conv, BatchNormalization, Relu, AveragePool,
GlobalAveragePool, Flatten / Reshape (to ``[N, -1]``), Dropout and Identity nodes is rebuilt
as the equivalent ``torch.nn.Sequential``, which `npuc.frontends.ann.ann_to_snn` converts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

from .errors import FrontendError

SUPPORTED = ("Gemm", "MatMul", "Add", "Conv", "BatchNormalization", "Relu", "AveragePool", "GlobalAveragePool",
             "Flatten", "Reshape", "Dropout", "Identity", "Constant")


def onnx_relu_model(path: str | os.PathLike) -> nn.Sequential:
    """The ONNX file's chain of layers as a ``torch.nn.Sequential`` (see the module docstring).

    Raises:
        FrontendError: a branch, an unsupported op (naming the node) or non-constant weights.
    """
    where = str(path)
    if not Path(path).is_file():
        raise FrontendError(f"{where}: no such ONNX file")
    try:
        model = onnx.load(where)
    except Exception as e:  # noqa: BLE001 (protobuf raises several types)
        raise FrontendError(f"{where}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    if len([i for i in g.input if i.name not in consts]) != 1 or len(g.output) != 1:
        raise FrontendError(f"{where}: ANN-to-SNN conversion supports one input and one output")
    layers: list[nn.Module] = []
    pending: nn.Linear | None = None  # a MatMul waiting for its bias Add
    for n in g.node:
        op, attrs = n.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if op == "Constant":
            continue
        if op not in SUPPORTED:
            raise FrontendError(f"{where}: node '{n.name}' ({op}) is not supported for ANN-to-SNN conversion "
                                f"(supported: {', '.join(SUPPORTED[:-1])})")
        w = [consts.get(i) for i in n.input[1:]]
        if op == "Gemm":
            layers.append(_gemm(n, attrs, w, where))
        elif op == "MatMul":
            pending = _linear(w[0].T, None)
            layers.append(pending)
        elif op == "Add":
            if pending is None or w[0] is None:
                raise FrontendError(f"{where}: node '{n.name}' (Add) is not a bias after a MatMul (branches are not "
                                    "supported for ANN-to-SNN conversion)")
            pending.bias = nn.Parameter(torch.from_numpy(w[0].reshape(-1).copy()))
        elif op == "Conv":
            layers.append(_conv(n, attrs, w, where))
        elif op == "BatchNormalization":
            bn = nn.BatchNorm2d(len(w[0]), eps=float(attrs.get("epsilon", 1e-5)))
            for t, v in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), w):
                t.data = torch.from_numpy(v.copy())
            layers.append(bn)
        elif op == "Relu":
            layers.append(nn.ReLU())
        elif op == "AveragePool":
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:] or attrs.get("ceil_mode", 0):
                raise FrontendError(f"{where}: node '{n.name}' (AveragePool) needs symmetric pads, ceil_mode=0")
            layers.append(nn.AvgPool2d(tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", attrs["kernel_shape"])),
                                       tuple(pads[:2]),
                                       count_include_pad=bool(attrs.get("count_include_pad", 0)) or not any(pads)))
        elif op == "GlobalAveragePool":
            layers.append(nn.AdaptiveAvgPool2d(1))
        elif op in ("Flatten", "Reshape"):
            layers.append(nn.Flatten())
        if op != "MatMul" and op != "Add":
            pending = None
    return nn.Sequential(*layers).eval()


def _linear(w: np.ndarray, b: np.ndarray | None) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    lin.weight.data = torch.from_numpy(np.ascontiguousarray(w))
    if b is not None:
        lin.bias.data = torch.from_numpy(b.reshape(-1).copy())
    return lin


def _gemm(n, attrs: dict, w: list, where: str) -> nn.Linear:
    if attrs.get("transA", 0) or float(attrs.get("alpha", 1.0)) != 1.0 or float(attrs.get("beta", 1.0)) != 1.0:
        raise FrontendError(f"{where}: node '{n.name}' (Gemm) needs transA=0, alpha=beta=1")
    if w[0] is None:
        raise FrontendError(f"{where}: node '{n.name}' (Gemm) has non-constant weights")
    weight = w[0] if attrs.get("transB", 0) else w[0].T
    return _linear(weight, w[1] if len(w) > 1 else None)


def _conv(n, attrs: dict, w: list, where: str) -> nn.Conv2d:
    weight = w[0]
    if weight is None or weight.ndim != 4:
        raise FrontendError(f"{where}: node '{n.name}' (Conv) needs constant 2-d convolution weights")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise FrontendError(f"{where}: node '{n.name}' (Conv) needs symmetric pads, got {pads}")
    groups = int(attrs.get("group", 1))
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                     tuple(attrs.get("strides", (1, 1))), tuple(pads[:2]), tuple(attrs.get("dilations", (1, 1))),
                     groups, bias=len(w) > 1 and w[1] is not None)
    conv.weight.data = torch.from_numpy(weight.copy())
    if conv.bias is not None:
        conv.bias.data = torch.from_numpy(w[1].copy())
    return conv
