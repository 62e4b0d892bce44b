"""Print a `NetworkSpec` as a standalone Lava module (jinja2) plus its parameter arrays.

The template (``templates/network.py.j2``) holds loops and fields only: this
module turns every process into a class name and a list of ``(keyword,
Python source)`` pairs, and every array into an ``.npz`` entry.
"""

from __future__ import annotations

import io
import json
from typing import Any

import jinja2
import numpy as np

from ...ir.serialize import write_npz
from .spec import Connection, NetworkSpec, Population

EXAMPLE_BATCH = 2
EXAMPLE_STEPS = 8  # when the graph leaves T to its inputs
EXAMPLE_SEED = 0


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("npuc.backends.lava", "templates"),
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["pyrepr"] = _pyrepr
    return env


def _pyrepr(v: Any) -> str:
    """Python source for a literal (ints, strings, bools, None, tuples, dicts of those)."""
    if isinstance(v, (np.integer,)):
        return repr(int(v))
    if isinstance(v, tuple):
        return repr(tuple(int(x) if isinstance(x, np.integer) else x for x in v))
    return repr(v)


def _neuron(p: Population, arrays: dict[str, np.ndarray]) -> dict:
    if p.kind == "relay":  # lava.proc.graded's GradedVec with vth = 0 forwards a_in as a graded spike
        return {"key": p.key, "node": p.node, "cls": "GradedVec", "kwargs": [("shape", _pyrepr(p.lava_shape)),
                                                                             ("vth", "0")]}
    bias = np.asarray(p.bias_mant)
    if bias.size and np.all(bias == bias.reshape(-1)[0]):
        bias_src = repr(int(bias.reshape(-1)[0]))
    else:
        arrays[f"{p.key}_bias_mant"] = bias.astype(np.int32)
        bias_src = f"P[{p.key + '_bias_mant'!r}]"
    kw = [("shape", _pyrepr(p.lava_shape)), ("du", _decay_src(p, "du", arrays)), ("dv", _decay_src(p, "dv", arrays))]
    if p.kind == "custom":
        return {"key": p.key, "node": p.node, "cls": "NpucNeuron", "kwargs": _custom_kwargs(p, kw, bias_src, arrays)}
    if p.kind == "lif":
        cls = "LIFReset"
        kw += [("vth", str(p.vth)), ("bias_mant", bias_src), ("bias_exp", str(p.bias_exp)),
               ("reset_interval", "period"), ("reset_offset", f"({p.lag} + 1) % period")]
    else:
        cls = "TernaryLIF"
        kw += [("vth_hi", str(p.vth)), ("vth_lo", str(p.vth_lo)), ("bias_mant", bias_src),
               ("bias_exp", str(p.bias_exp))]
    kw.append(("name", repr(p.node)))
    return {"key": p.key, "node": p.node, "cls": cls, "kwargs": kw}


def _decay_src(p: Population, field: str, arrays: dict[str, np.ndarray]) -> str:
    """A decay's source: the integer, or (per-neuron decays of a custom neuron) its array in the params file."""
    d = getattr(p, field)
    if not isinstance(d, np.ndarray):
        return str(d)
    arrays[f"{p.key}_{field}"] = d.astype(np.int32)
    return f"P[{p.key + '_' + field!r}]"


def _custom_kwargs(p: Population, kw: list, bias_src: str, arrays: dict[str, np.ndarray]) -> list:
    c = p.custom
    kw = [kw[0], ("in_shape", _pyrepr(p.in_shape)), *kw[1:], ("vth", str(p.vth)),
          ("vth_lo", str(p.vth_lo or 0)), ("bias_mant", bias_src), ("bias_exp", str(p.bias_exp))]
    kw += [(k, repr(c[k])) for k in ("reset", "reset_value", "reset_timing", "compare", "spike", "levels", "v_init")]
    if c["charge"] != "current":
        kw.append(("charge", repr(c["charge"])))
    if c["v_min"] is not None:
        arrays[f"{p.key}_v_min"] = np.asarray(c["v_min"]).astype(np.int32)
        kw.append(("v_min", f"P[{p.key + '_v_min'!r}]"))
    if c["pool"] is not None:
        kw.append(("pool", _pyrepr(c["pool"])))
    if c.get("bias_a") is not None:
        arrays[f"{p.key}_bias_a"] = np.asarray(c["bias_a"]).astype(np.int32)
        kw.append(("bias_a", f"P[{p.key + '_bias_a'!r}]"))
    kw += [("reset_interval", "period"), ("reset_offset", f"({p.lag} + 1) % period"), ("name", repr(p.node))]
    return kw


def _attention(c: Connection, pops: dict[str, Population], dst: Population, arrays: dict[str, np.ndarray]) -> dict:
    a = c.attention
    kw = [("in_sizes", _pyrepr(tuple(pops[k].size for k, _ in a["inputs"])))]
    for role, (_, idx) in zip("qkv", a["inputs"]):
        arrays[f"{c.key}_{role}_index"] = np.asarray(idx, np.int64)
        kw.append((f"{role}_index", f"P[{c.key + '_' + role + '_index'!r}]"))
    for part in ("rows", "cols"):
        arrays[f"{c.key}_{part}"] = np.asarray(a[part], np.int64)
        kw.append((part, f"P[{c.key + '_' + part!r}]"))
    kw += [("out_size", str(dst.size))] + [(k, str(a[k])) for k in ("a_int", "a_frac", "mult", "shift")]
    kw += [("fifo", _pyrepr(tuple(a["fifo"]))), ("name", repr(c.node))]
    return {"key": c.key, "cls": "NpucAttention", "kwargs": kw}


def _attention_wires(c: Connection, pops: dict[str, Population], dst: Population) -> list[str]:
    wires = []
    for role, (k, _) in zip("qkv", c.attention["inputs"]):
        port = ".flatten()" if len(pops[k].lava_shape) > 1 else ""
        wires.append(f"{k}.s_out{port}.connect({c.key}.{role}_in)")
    tail = f".reshape({dst.lava_shape!r})" if len(dst.in_shape or dst.lava_shape) > 1 else ""
    return wires + [f"{c.key}.a_out{tail}.connect({dst.key}.a_in)"]


def _synapse(c: Connection, src: Population, dst: Population, arrays: dict[str, np.ndarray]) -> dict:
    nmb = str(src.message_bits if src.graded else 0)
    if c.kind == "sparse":
        rows, cols = f"{c.key}_rows", f"{c.key}_cols"
        if c.sparse_weights is None:
            arrays[rows] = np.arange(dst.size, dtype=np.int64)
            arrays[cols] = np.asarray(c.source_of, np.int64)
            ones = f"sparse_matrix(P[{rows!r}], P[{cols!r}], ({dst.size}, {src.size})"
            kw = [("weights", ones + ")")]
        else:  # an unrolled convolution
            arrays[rows], arrays[cols] = (np.asarray(a, np.int64) for a in c.sparse_weights[:2])
            arrays[f"{c.key}_values"] = np.asarray(c.sparse_weights[2], np.int32)
            ones = f"sparse_matrix(P[{rows!r}], P[{cols!r}], ({dst.size}, {src.size})"
            kw = [("weights", ones + f", P[{c.key + '_values'!r}])"), ("weight_exp", "0"),
                  ("num_weight_bits", str(c.num_weight_bits))]
        cls = "Sparse"
        if c.delay > 0:
            cls = "DelaySparse"
            kw.append(("delays", ones + f", value={c.delay})"))
        kw += [("num_message_bits", nmb), ("name", repr(c.node))]
        return {"key": c.key, "cls": cls, "kwargs": kw}
    wkey = f"{c.key}_weights"
    arrays[wkey] = np.ascontiguousarray(c.weights, dtype=np.int32)
    if c.kind == "token_dense":
        kw = [("in_size", str(src.size)), ("out_size", str(dst.size))]
        for part in ("index", "rows", "cols"):
            arrays[f"{c.key}_{part}"] = np.asarray(c.token[part], np.int64)
            kw.append((part, f"P[{c.key + '_' + part!r}]"))
        kw += [("weights", f"P[{wkey!r}]"), ("weight_exp", str(c.weight_exp)), ("delay", str(c.delay)),
               ("num_message_bits", nmb), ("name", repr(c.node))]
        return {"key": c.key, "cls": "NpucTokenDense", "kwargs": kw}
    if c.kind == "conv":
        kw = [("weight", f"P[{wkey!r}]")]
        kw += [(k, _pyrepr(v)) for k, v in c.conv.items()]
        kw += [("num_message_bits", nmb), ("name", repr(c.node))]
        return {"key": c.key, "cls": "Conv", "kwargs": kw}
    kw = [("weights", f"P[{wkey!r}]")]
    cls = "Dense"
    if c.delay > 0:
        cls = "DelayDense"
        kw.append(("delays", str(c.delay)))
    kw += [("weight_exp", str(c.weight_exp)), ("num_weight_bits", str(c.num_weight_bits)),
           ("num_message_bits", nmb), ("name", repr(c.node))]
    return {"key": c.key, "cls": cls, "kwargs": kw}


def example_inputs(spec: NetworkSpec) -> dict[str, np.ndarray]:
    """A deterministic per-step integer example for each input (the standalone run's data)."""
    rng = np.random.default_rng(EXAMPLE_SEED)
    T = spec.num_steps or EXAMPLE_STEPS
    out = {}
    for i in spec.inputs:
        pop = spec.population(i.population)
        shape = (T, EXAMPLE_BATCH, *i.shape)
        if pop.graded:
            hi = 2 ** (pop.message_bits - 1)
            x = rng.integers(-hi, hi, shape)
        else:
            x = (rng.random(shape) < 0.3).astype(np.int64)
        out[i.population] = x.astype(np.int32)
    return out


def render(spec: NetworkSpec, version: str) -> tuple[str, dict[str, np.ndarray]]:
    """The module text and the arrays of its ``.npz``."""
    arrays: dict[str, np.ndarray] = {}
    pops = {p.key: p for p in spec.populations}
    sources = []
    for pos, i in enumerate(spec.inputs):
        p = pops[i.population]
        arrays[f"{p.key}_index"] = p.index.astype(np.int64)
        sources.append({"key": p.key, "node": p.node, "pos": pos, "index_key": f"{p.key}_index",
                        "lava_shape": p.lava_shape})
    neurons = [_neuron(p, arrays) for p in spec.neurons]
    synapses, wires, resets = [], [], []
    for c in spec.connections:
        src, dst = pops[c.src], pops[c.dst]
        if c.kind == "wire":
            wires.append(f"{src.key}.s_out{c.src_port}.connect({dst.key}.a_in)")
            continue
        if c.kind == "attention":
            synapses.append(_attention(c, pops, dst, arrays))
            wires += _attention_wires(c, pops, dst)
            continue
        synapses.append(_synapse(c, src, dst, arrays))
        wires.append(f"{src.key}.s_out{c.src_port}.connect({c.key}.s_in)")
        wires.append(f"{c.key}.a_out{c.dst_port}.connect({dst.key}.a_in)")
        if c.flush:
            resets.append({"var": f"{c.key}.a_buff", "lag": dst.lag})
    for p in spec.neurons:
        if p.kind == "ternary":
            resets += [{"var": f"{p.key}.u", "lag": p.lag}, {"var": f"{p.key}.v", "lag": p.lag}]
    readouts = []
    for r in spec.readouts:
        arrays[f"readout_{r.name}"] = r.index.astype(np.int64)
        readouts.append({"name": r.name, "population": r.population, "port": r.port, "lag": pops[r.population].lag})
    probes: dict[str, dict[str, str]] = {}
    for r in spec.readouts:
        if r.name.startswith("probe_"):
            probes.setdefault(pops[r.population].node, {})[r.port] = r.name
    for key, x in example_inputs(spec).items():
        arrays[f"example_{key}"] = x
    ctx = {
        "graph_name": repr(spec.name), "version": version, "module_file": f"{spec.ident}.py",
        "params_file": f"{spec.ident}.npz", "num_steps": spec.num_steps, "max_lag": spec.max_lag,
        "state_gap": {"run": spec.state_gap(False), "trace": spec.state_gap(True)},
        "inputs": [{"node": i.node, "key": i.population, "shape": tuple(i.shape), "graded": pops[i.population].graded}
                   for i in spec.inputs],
        "readouts": readouts,
        "outputs": [{"node": o.node, "readout": o.readout} for o in spec.outputs],
        "probes": [{"node": n, "ports": ports} for n, ports in probes.items()],
        "sources": sources, "neurons": neurons, "synapses": synapses, "wires": wires, "resets": resets,
    }
    ctx["custom"] = any(n["cls"] == "NpucNeuron" for n in neurons)
    ctx["attention"] = any(c["cls"] == "NpucAttention" for c in synapses)
    ctx["token_dense"] = any(c["cls"] == "NpucTokenDense" for c in synapses)
    ctx["imports"] = _imports({n["cls"] for n in neurons} | {c["cls"] for c in synapses})
    text = _env().get_template("network.py.j2").render(**ctx)
    return text, arrays


_PROCESS_MODULES = {
    "LIFReset": "lava.proc.lif.process", "TernaryLIF": "lava.proc.lif.process",
    "Dense": "lava.proc.dense.process", "DelayDense": "lava.proc.dense.process",
    "Sparse": "lava.proc.sparse.process", "DelaySparse": "lava.proc.sparse.process",
    "Conv": "lava.proc.conv.process", "GradedVec": "lava.proc.graded.process",
}
_CUSTOM_IMPORTS = {  # what the custom NpucNeuron process and its model need
    "lava.magma.core.decorator": ["implements", "requires", "tag"],
    "lava.magma.core.model.py.model": ["PyLoihiProcessModel"],
    "lava.magma.core.model.py.ports": ["PyInPort", "PyOutPort"],
    "lava.magma.core.model.py.type": ["LavaPyType"],
    "lava.magma.core.process.ports.ports": ["InPort", "OutPort"],
    "lava.magma.core.process.process": ["AbstractProcess"],
    "lava.magma.core.process.variable": ["Var"],
    "lava.magma.core.resources": ["CPU"],
    "lava.magma.core.sync.protocols.loihi_protocol": ["LoihiProtocol"],
}
_ALWAYS = {  # used by the module's fixed helpers
    "lava.magma.core.run_conditions": ["RunSteps"],
    "lava.magma.core.run_configs": ["Loihi2SimCfg"],
    "lava.proc.io.extractor": ["Extractor", "PyLoihiExtractorModel", "PyLoihiVarWireModel", "VarWire"],
    "lava.proc.io.reset": ["Reset"],
    "lava.proc.io.source": ["RingBuffer"],
    "scipy.sparse": ["csr_matrix"],
}


def _imports(classes: set[str]) -> list[tuple[str, list[str]]]:
    """``from module import names`` lines for the process classes the module uses (sorted)."""
    mods: dict[str, list[str]] = {k: list(v) for k, v in _ALWAYS.items()}
    for cls in classes:
        if cls in ("NpucNeuron", "NpucAttention", "NpucTokenDense"):
            for m, names in _CUSTOM_IMPORTS.items():
                mods.setdefault(m, []).extend(names)
            continue
        mods.setdefault(_PROCESS_MODULES[cls], []).append(cls)
    return [(m, sorted(set(n))) for m, n in sorted(mods.items())]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The params ``.npz`` (`npuc.ir.serialize.write_npz`: deterministic, integers stored narrow;
    the module's ``load_params`` widens them back)."""
    buf = io.BytesIO()
    write_npz(buf, {k: np.ascontiguousarray(a) for k, a in arrays.items()})  # as before: 0-d arrays as [1]
    return buf.getvalue()


def manifest(spec: NetworkSpec, netx_report: dict) -> str:
    """``network.json``: what `npuc.backends.lava.run` needs (inputs, outputs) and a summary of the mapping."""
    pops = {p.key: p for p in spec.populations}
    doc = {
        "format": "npuc-lava",
        "version": 1,
        "graph": spec.name,
        "module": f"{spec.ident}.py",
        "params": f"{spec.ident}.npz",
        "netx": "network.net",
        "num_steps": spec.num_steps,
        "inputs": [{"node": i.node, "shape": list(i.shape), "layout": i.layout, "index": i.index,
                    "encoding": i.encoding, "q": i.q, "graded": pops[i.population].graded,
                    "message_bits": pops[i.population].message_bits} for i in spec.inputs],
        "outputs": [{"node": o.node, "readout": o.readout, "decoding": o.decoding, "layout": o.layout,
                     "index": o.index} for o in spec.outputs],
        "populations": [{"node": p.node, "process": p.key, "lava_process": _lava_class(p), "shape": list(p.shape),
                         "lava_shape": list(p.lava_shape), "lag": p.lag} for p in spec.populations],
        "connections": [{"node": c.node, "process": c.key, "lava_process": _conn_class(c), "from": pops[c.src].node,
                         "to": pops[c.dst].node, "lava_delay_steps": c.hw_delay, "graph_delay": c.delta,
                         "flush_per_sample": c.flush} for c in spec.connections],
        "netx_layers": netx_report,
        "custom_processes": custom_processes(spec),
        "fan_in_relays": fan_in_relays(spec),
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


CHIP_NOTE = ("NpucNeuron, NpucAttention and NpucTokenDense are npuc's custom Lava processes (bit-accurate fixed_pt "
             "models in the generated module); to run on the Loihi 2 chip NpucNeuron needs a matching microcode neuron "
             "model (lava-loihi) and NpucAttention an implementation on the chip's embedded processors (or microcode), "
             "which npuc does not generate; NpucTokenDense is ordinary synapses on the chip (one Dense block per "
             "token). Compile with --target loihi2:stock_only=1 to use lava-nc's stock processes only.")


def fan_in_relays(spec: NetworkSpec) -> list[dict]:
    """Every relay population (a neuron whose fan-in exceeds a core's input axons) and what it needs."""
    out = []
    for p in spec.populations:
        if p.kind != "relay":
            continue
        dst = p.node.rsplit(".relay", 1)[0]
        bits = int(p.max_payload).bit_length() + 1
        out.append({"node": dst, "lava_process": p.key, "relays": p.size, "needs": [
            f"{p.size} relay neurons (lava.proc.graded GradedVec, vth=0) that forward their summed input as a "
            f"graded spike of up to {bits} bits (|partial sum| <= {p.max_payload}; Loihi 2 carries 24)",
            f"one more Lava step of latency into '{dst}' (the other paths into it wait in DelayDense/DelaySparse)"]})
    return out


def custom_processes(spec: NetworkSpec) -> list[dict]:
    """Every population or attention that runs as a custom process: node, process class, and what it needs."""
    out = [{"node": p.node, "process": "NpucNeuron", "lava_process": p.key, "needs": list(p.custom["reasons"])}
           for p in spec.populations if p.kind == "custom"]
    pops = {p.key: p for p in spec.populations}
    out += [{"node": c.node, "process": "NpucAttention", "lava_process": c.key, "needs": attention_needs(c, pops)}
            for c in spec.connections if c.kind == "attention"]
    out += [{"node": c.node, "process": "NpucTokenDense", "lava_process": c.key, "needs": token_dense_needs(c)}
            for c in spec.connections if c.kind == "token_dense"]
    return out


def token_dense_needs(c: Connection) -> list[str]:
    """What an ``NpucTokenDense`` stands for on the chip: ordinary synapses, one block per token."""
    tokens, fin = c.token["index"].shape
    fout = c.weights.shape[0]
    nnz = int(np.count_nonzero(c.weights))
    return [f"a Dense applied per token: {tokens} tokens x weight [{fout}, {fin}] ({nnz} nonzero); lava-nc's Dense "
            f"would hold the block-diagonal matrix of {tokens * tokens * fout * fin} weights",
            f"on the chip: ordinary Dense synapses ({tokens} x {nnz} = {tokens * nnz}, stored per destination "
            "core as map-cores counts them), no microcode"]


def attention_needs(c: Connection, pops: dict[str, Population]) -> list[str]:
    """What an ``NpucAttention`` computes per step, i.e. what the chip must run for it."""
    a, d = c.attention, c.attention["dims"]
    h, n, m, dk, dv = d["heads"], d["queries"], d["keys"], d["dk"], d["dv"]
    score = {"and": "popcount(q AND k)", "xnor": "Dk - popcount(q XOR k)"}.get(
        a["score"], f"popcount(q AND k) 2^{a['a_frac']} + {a['a_int']} popcount(NOT q AND NOT k)")
    bits = int(a["bound"]).bit_length() + 1
    srcs = ", ".join(f"{r} from '{pops[k].node}'" for r, (k, _) in zip("QKV", a["inputs"]))
    return [
        "coincidence attention: no lava-nc process multiplies two spike trains (Loihi 2's synapses weight one "
        "spike by a stored constant), so it needs an implementation on the chip's embedded processors or in "
        "microcode",
        f"per step it reads {h * n * dk} + {h * m * dk} + {h * m * dv} spikes ({srcs}; {h} head(s), {n} queries, "
        f"{m} keys, Dk={dk}, Dv={dv})",
        f"computes {h * n * m} scores {score} of {dk}-bit words, {h * n * m * dv} score x value accumulations "
        f"(V is binary: additions) and {h * n * dv} multiply-shifts (* {a['mult']} >> {a['shift']})",
        f"sends {h * n * dv} graded values of up to {bits} bits (|y| <= {a['bound']}) into '{pops[c.dst].node}' "
        f"one step later" + (" (Loihi 2's graded spikes carry 24 bits: this bound exceeds them)" if bits > 24
                             else " (fits Loihi 2's 24-bit graded spikes)")
        + (f"; inputs wait {list(a['fifo'])} steps in the process to line up" if any(a["fifo"]) else ""),
    ]


def _lava_class(p: Population) -> str:
    return {"source": "RingBuffer", "lif": "LIFReset", "ternary": "TernaryLIF", "custom": "NpucNeuron",
            "relay": "GradedVec"}[p.kind]


def _conn_class(c: Connection) -> str:
    if c.kind == "wire":
        return "direct"
    if c.kind == "conv":
        return "Conv"
    if c.kind == "attention":
        return "NpucAttention"
    if c.kind == "token_dense":
        return "NpucTokenDense"
    base = "Sparse" if c.kind == "sparse" else "Dense"
    return f"Delay{base}" if c.delay > 0 else base
