"""The ONNX form of an npuc graph, shared by `onnx_import` and `onnx_export`.

An ONNX model here describes ONE time step: standard operators for the
synapses plus custom-domain nodes ``ai.npuc::LIF`` / ``ai.npuc::IF`` (the IR
`LIF` op; its attributes are the canonical fields) and ``ai.npuc::SumPool2d``.
The neuron state (``v``, ``i``) lives inside the LIF node from step to step.

Layout: graph inputs and outputs are ``[B, ...]`` (the leading axis is the
batch and is dropped; the rest is the per-sample shape). The model metadata
prop ``npuc.layout`` (``"B"``, ``"TB"``, ``"BT"``, or a JSON object per input)
says how the user's data is laid out: ``B`` = a static value repeated for
``steps`` steps (the default), ``TB``/``BT`` = one value per step. Other
``npuc.*`` props (written by `export_onnx`) hold what ONNX cannot:
``npuc.num_steps``, ``npuc.encoding``, ``npuc.outputs`` (decodings),
``npuc.recurrent`` (delayed edges as state input/output pairs),
``npuc.node_meta``, ``npuc.graph_meta`` and ``npuc.exact`` (float64 scalars).
See docs/nir-onnx.md.
"""

from __future__ import annotations

import dataclasses

from ..ir import LIF

DOMAIN = "ai.npuc"
OPSET = 17
LIF_FIELDS = [f.name for f in dataclasses.fields(LIF) if f.name not in ("q", "form_args")]
"""The `LIF` fields written as ``ai.npuc::LIF`` attributes."""
FLOAT_FIELDS = ("reset_value", "v_init")
"""LIF fields that are Python floats in the IR (float64 values go to ``npuc.exact``)."""
