"""Write a lowered network as a lava-dl netx HDF5 file (``network.net``), with h5py only.

netx (``lava.lib.dl.netx.hdf5.Network``) builds feed-forward chains of
``dense`` / ``conv`` blocks with CUBA neurons (schema: docs/lava-facts.md
section 11). A layer is written when netx rebuilds exactly the same integer
dynamics:

* the network is a chain from one input through binary LIF populations, each
  fed by one Dense (one-dimensional output) or one Conv of the previous
  population, without delays or recurrence;
* netx re-derives Dense weight scaling (``optimize_weight_bits``) and ignores
  any exponent in the file, so the weights are stored as ``W * 2^weight_exp``
  and must survive netx's rescaling and Lava's clipping unchanged;
* netx's neurons take ``bias_exp = 6`` and ``du = iDecay - 1``: the bias must be
  ``bias_mant << bias_exp = B << 6`` with a 13-bit ``B`` (uniform per channel for
  convolutions).

The chain is written up to the first layer that is not representable; every
layer left out is listed with its reason (returned, and printed as a warning
by `npuc.backends.lava.emit`, an error under ``--target loihi2:netx=1``, whose
quantization makes every chain layer representable: docs/lava-facts.md 11b).
"""

from __future__ import annotations

import io
from typing import Any

import h5py
import numpy as np

from .lowering import lava_index
from .spec import Connection, NetworkSpec, Population

BIAS_MAX = 2**12  # 13-bit signed mantissa


def _netx_keeps(w_file: np.ndarray) -> bool:
    """Whether netx + Lava compute ``sum(w_file * s)`` exactly: netx's ``optimize_weight_bits``
    (lava-dl 0.6.0 netx/utils.py) shifts the weights left by ``scale_bits`` and sets
    ``weight_exp = -scale_bits``; Lava's Dense then re-derives the sign mode (netx does not pass
    its own: a matrix of negatives and zeros is mixed for netx, inhibitory for Lava) and clips and
    truncates the weights to ``num_weight_bits``."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    w = np.asarray(w_file, np.int64)
    if not np.any(w):
        return w.size == 0  # netx's scale 255 / 0 fails on an all-zero matrix
    mx, mn = int(w.max()), int(w.min())
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        return False  # netx clips to [-256, 254]
    if mx < 0:
        signed, scale = 0, -256 / mn
    elif mn >= 0:
        signed, scale = 0, 255 / mx
    else:  # netx's numpy gives 127 / 0 = inf
        signed, scale = 1, min(127 / mx if mx > 0 else np.inf, -128 / mn)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    nwb = 8 - scale_bits - (n - signed)
    if not 1 <= nwb <= 8 or scale_bits < 0:
        return False
    shifted = w << scale_bits
    sm = determine_sign_mode(shifted)
    kept = truncate_weights(clip_weights(shifted, sm, num_bits=8), sm, nwb)
    return bool(np.array_equal(np.asarray(kept, np.int64), shifted))


def _neuron_bias(p: Population, per_channel: bool) -> tuple[np.ndarray | None, str]:
    eff = np.asarray(p.bias_mant, np.int64) << p.bias_exp  # Lava layout
    if np.any(eff % 64):
        return None, (f"bias_mant << bias_exp (bias_exp={p.bias_exp}) is not a multiple of 2^6; netx neurons use "
                      "bias_exp=6")
    b = eff >> 6
    if per_channel:
        chans = b.reshape(-1, b.shape[-1])  # (W*H, C)
        if np.any(chans != chans[0]):
            return None, "bias varies within a channel (netx conv biases are per channel)"
        b = chans[0]
    else:
        b = b.reshape(-1)
    if b.size and (b.min() < -BIAS_MAX or b.max() >= BIAS_MAX):
        return None, f"bias {b.min()}..{b.max()} exceeds the 13-bit mantissa netx passes with bias_exp=6"
    return b, ""


def _layer(c: Connection, src: Population, dst: Population) -> tuple[dict | None, str]:
    if c.kind == "attention":
        return None, "attention (npuc's custom NpucAttention process) has no netx block"
    if c.kind == "token_dense":
        return None, "a Dense applied per token (npuc's NpucTokenDense process) has no netx block"
    if dst.kind == "custom":
        return None, "npuc's custom neuron process (" + "; ".join(dst.custom["reasons"]) + ") has no netx neuron type"
    if dst.kind == "relay":
        return None, "fan-in relays (graded GradedVec neurons) have no netx block"
    if dst.kind != "lif":
        return None, "ternary neurons have no netx neuron type"
    if c.kind in ("wire", "sparse") or c.delay or c.flush:
        return None, "spikes added without weights, delays and recurrent edges are not netx chain layers"
    neuron = {"type": "CUBA", "iDecay": dst.du + 1, "vDecay": dst.dv, "vThMant": dst.vth, "refDelay": 1,
              "gradedSpike": False}
    if c.kind == "conv":
        if c.pool:
            return None, "sum pooling (netx has no pooling blocks)"
        if c.src_port or c.dst_port or len(src.shape) != 3:
            return None, "the convolution reads or writes its population through a reshape or permutation"
        bias, why = _neuron_bias(dst, per_channel=True)
        if bias is None:
            return None, why
        w = np.asarray(c.weights)[:, ::-1, ::-1, :].transpose(0, 3, 2, 1)  # back to (O, I/g, kH, kW)
        cin = c.conv["input_shape"][2]
        return {"type": "conv", "shape": dst.shape, "weight": w, "bias": bias, "inChannels": cin,
                "outChannels": w.shape[0], "kernelSize": w.shape[2:], "stride": c.conv["stride"][::-1],
                "padding": c.conv["padding"][::-1], "dilation": c.conv["dilation"][::-1], "groups": c.conv["groups"],
                "neuron": neuron}, ""
    if len(dst.shape) != 1:
        return None, "a netx dense layer has a one-dimensional output"
    if len(src.shape) not in (1, 3):
        return None, "netx flattens (C, H, W) or one-dimensional populations only"
    w = np.asarray(c.weights, np.int64)
    if len(src.shape) == 3:
        w = w[:, lava_index(src.shape).ravel()]  # netx reads a flatten layer in (C, H, W) order
    if c.weight_exp >= 0:
        w_file = w << c.weight_exp
    elif np.any(w % (1 << -c.weight_exp)):
        return None, f"weight_exp={c.weight_exp} with weights not divisible by 2^{-c.weight_exp} (netx ignores exponents)"
    else:
        w_file = w >> -c.weight_exp
    if w_file.size and not np.any(w_file):
        return None, "every weight is 0 (netx's optimize_weight_bits fails on an all-zero matrix: log2 of 255/0)"
    if not _netx_keeps(w_file):
        return None, "netx's weight rescaling (optimize_weight_bits) would change these weights"
    bias, why = _neuron_bias(dst, per_channel=False)
    if bias is None:
        return None, why
    return {"type": "dense", "shape": (dst.shape[0], 1, 1), "weight": w_file, "bias": bias,
            "inFeatures": w_file.shape[1], "outFeatures": w_file.shape[0], "neuron": neuron,
            "flatten_before": src.shape if len(src.shape) == 3 else None}, ""


def plan(spec: NetworkSpec) -> tuple[list[dict], list[dict[str, str]]]:
    """The netx layers (in order) and the npuc neurons left out, with reasons."""
    pops = {p.key: p for p in spec.populations}
    layers: list[dict] = []
    sources = [p for p in spec.populations if p.kind == "source"]
    stop, reason = "", "netx networks have exactly one input"
    if len(sources) == 1:
        cur, reason = sources[0], ""
        while True:
            outs = [c for c in spec.connections if c.src == cur.key]
            if not outs:
                break
            if len(outs) != 1:
                stop, reason = pops[outs[0].dst].node, f"'{cur.node}' feeds {len(outs)} synapses; netx describes chains"
                break
            c = outs[0]
            dst = pops[c.dst]
            ins = [k for k in spec.connections if k.dst == dst.key]
            layer, why = _layer(c, cur, dst)
            if len(ins) != 1:
                layer, why = None, f"sums {len(ins)} synapse paths; netx describes chains"
            if layer is None:
                stop, reason = dst.node, why
                break
            layer["node"] = dst.node
            layers.append(layer)
            cur = dst
    done = {lay["node"] for lay in layers}
    left = []
    for p in spec.neurons:
        if p.node not in done:
            why = reason if (p.node == stop or not stop) and reason else \
                "follows a layer netx cannot represent, or is off the input's chain"
            left.append({"node": p.node, "reason": why})
    return layers, left


def _scalar(g: h5py.Group, name: str, value: Any, dtype: Any = np.int64) -> None:
    g.create_dataset(name, data=np.asarray(value, dtype=dtype))


def netx_bytes(spec: NetworkSpec) -> tuple[bytes, dict[str, Any]]:
    """The HDF5 file and a report ``{"layers": [...], "not_representable": [...], "load": ...}``."""
    layers, left = plan(spec)
    buf = io.BytesIO()
    with h5py.File(buf, "w", track_order=False) as f:
        lg = f.create_group("layer")
        i = 0
        for lay in layers:
            if lay.get("flatten_before") is not None:
                g = lg.create_group(str(i))
                g.create_dataset("type", (1,), "S10", [b"flatten"])
                _scalar(g, "shape", (1, 1, int(np.prod(lay["flatten_before"]))))
                i += 1
            g = lg.create_group(str(i))
            g.create_dataset("type", (1,), "S10", [lay["type"].encode()])
            _scalar(g, "shape", tuple(int(s) for s in lay["shape"]) + (1,) * (3 - len(lay["shape"])))
            g.create_dataset("weight", data=np.asarray(lay["weight"], np.float32))
            g.create_dataset("bias", data=np.asarray(lay["bias"], np.float32))
            keys = ("inFeatures", "outFeatures") if lay["type"] == "dense" else (
                "inChannels", "outChannels", "kernelSize", "stride", "padding", "dilation", "groups")
            for k in keys:
                _scalar(g, k, lay[k])
            ng = g.create_group("neuron")
            ng.create_dataset("type", data=lay["neuron"]["type"], dtype=h5py.string_dtype("ascii"))
            for k in ("iDecay", "vDecay", "vThMant", "refDelay"):
                _scalar(ng, k, lay["neuron"][k])
            _scalar(ng, "gradedSpike", lay["neuron"]["gradedSpike"], np.bool_)
            i += 1
        sim = f.create_group("simulation")
        _scalar(sim, "Ts", 1)
        _scalar(sim, "tSample", spec.num_steps or 0)
    src = next((p for p in spec.populations if p.kind == "source"), None)
    load = None
    if layers and src is not None:
        load = (f"lava.lib.dl.netx.hdf5.Network(net_config='network.net', input_shape={tuple(src.lava_shape)!r}, "
                f"input_message_bits={src.message_bits if src.graded else 0}, reset_interval=T, reset_offset=1)")
    report = {"layers": [lay["node"] for lay in layers], "not_representable": left, "load": load}
    return buf.getvalue(), report
