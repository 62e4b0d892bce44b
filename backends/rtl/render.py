"""Print a `Design` through the jinja2 templates of ``npuc.hdl`` and write the artifact folder.

The templates hold loops and fields. A stage's module (``layer.v.j2``, ``unit.v.j2``) prints
the model objects themselves (`Layer` with its `Path` / `AttnPath` list, `Unit`, `Gather`;
their fields are documented in `npuc.backends.rtl.model`) and derives its phase table in the
template. The top-level templates read `npuc.backends.rtl.view.TopView` (the wiring as data)
and print its Verilog expressions with the macros of ``top_macros.j2``.

Files written:

* ``<top>.v`` and one ``<module>.v`` per layer (generated), plus the static
  building blocks ``npuc_*.v`` copied from ``npuc.hdl``;
* ``mem/*.hex`` memory images (``$readmemh``, one word per line);
* ``tb_<top>.py``, the cocotb testbench, and ``harness_<top>.cpp``, its compiled twin
  (the default simulation path); ``design.json`` (what `run` and
  `rtl_report` read); ``files.f`` (source list); ``README`` (ports, protocol).

Output is deterministic: the same graph gives byte-identical files.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from . import integration
from .bounds import unsigned_bits
from .lower import STATIC_MODULES, vconst
from .model import AttnPath, Design, Gather, Layer, Unit
from .model import Path as SynPath
from .view import TopView, view

STATIC = STATIC_MODULES
KIND_NAMES = {0: "dense", 1: "conv", 2: "token_dense"}
DESIGN_FILE = "design.json"
DESIGN_VERSION = 1


def _env() -> jinja2.Environment:
    root = resources.files("npuc.hdl")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)), keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True, undefined=jinja2.StrictUndefined, autoescape=False, extensions=["jinja2.ext.do"])
    env.globals.update(vconst=vconst, bits=unsigned_bits)
    env.tests["attn"] = lambda p: isinstance(p, AttnPath)
    return env


_INCLUDE = re.compile(r'^`include "(npuc_[a-z0-9_]+\.vh)"\n', re.M)


def static_source(name: str) -> str:
    """A building block of ``npuc.hdl`` as an artifact file: its shared port groups
    (``npuc_*.vh``: Verilog-2005 has no interfaces) inlined, so every file stands alone and no
    tool flow needs an include path."""
    text = resources.files("npuc.hdl").joinpath(name).read_text()
    return _INCLUDE.sub(lambda m: static_source(m.group(1)), text)


def _gather_bits(g: Gather, rows: tuple[int, int], widths: tuple[int, int]) -> dict[str, int]:
    return {"gather_rows": rows[0] * widths[0] * g.fw + rows[1] * widths[1] * g.fw, "gather_rom": g.rom.bits}


def _path_json(p: SynPath | AttnPath) -> dict[str, Any]:
    if isinstance(p, AttnPath):
        dm = p.dims
        bits = _gather_bits(p.gather, (dm["H"] * dm["N"], dm["H"] * dm["M"]), (dm["DK"], dm["DK"] + dm["DV"]))
        kv = int(p.params["KVW"]) * p.lanes * int(p.params["KVDEPTH"]) if p.order == "q_kv" else 0
        bits.update(accumulators=p.aw * p.lanes * int(p.params["YDEPTH"]), kv=kv, iter=p.iter_rom.bits)
        return {
            "index": p.index, "source": p.source.pop, "source_ev": p.source.ident, "delay": p.delay, "nodes": p.nodes,
            "kind": "attention", "lanes": p.lanes, "fanout_cycles": 0.0, "fanout_synapses": 0.0, "pool": None,
            "attention": {"order": p.order, "dims": p.dims, "sources": [ev.pop for ev in p.gather.sources],
                          "delays": list(p.gather.delays), "a_int": int(p.params["AINT"]), "kc": p.kc, "mult": p.mult, "shift": p.shift},
            "memory_bits": bits,
        }
    return {
        "index": p.index, "source": p.source.pop, "source_ev": p.source.ident, "delay": p.delay, "early": p.early,
        "nodes": p.nodes, "kind": KIND_NAMES[p.kind], "lanes": p.lanes,
        "fanout_cycles": p.fanout, "fanout_synapses": p.fanout_synapses,
        "pool": None if p.pool is None else {"nodes": p.pool.nodes, "or": p.pool.is_or,
                                             "windows_per_event": p.pool.windows_per_event},
        "max_pool": None if p.maxpool is None else {"node": p.maxpool.node, "taps": p.maxpool.k,
                                                    "cycles": p.maxpool.n * p.maxpool.k + p.adepth + 4},
        "memory_bits": {"weights": p.weights.bits, "accumulators": p.aw * p.lanes * p.adepth,
                        "decode": p.decode.bits if p.decode else 0, "bias": p.bias.bits if p.bias else 0,
                        "pool": (p.pool.rom.bits + p.pool.nq * (2 * p.pool.pw + 2 * p.pool.qw + 1))
                        if p.pool else 0,
                        "max_pool": (p.maxpool.rom.bits + p.maxpool.n * p.aw) if p.maxpool else 0},
    }


def _stage_json(lay: Layer | Unit) -> dict[str, Any]:
    base = {"index": lay.index, "node": lay.node, "ident": lay.ident, "module": lay.module, "n": lay.n,
            "shape": list(lay.shape), "spike": lay.spike, "ev": lay.ev.ident if lay.ev else None}
    if isinstance(lay, Unit):
        dm = lay.dims
        if lay.kind == "sc":
            bits = _gather_bits(lay.gather, (dm["H"] * dm["N"], dm["H"] * dm["M"]), (dm["DK"], dm["DK"] + dm["DV"]))
            bits.update(outputs=lay.n)
        else:
            bits = _gather_bits(lay.gather, (dm["H"], dm["H"]), (dm["DK"], dm["DK"] + dm["DV"]))
            bits.update(state=int(lay.params["SWD"]) * lay.lanes * int(lay.params["SDEPTH"]), outputs=lay.n * lay.ow,
                        decay=sum(m.bits for m in lay.memories))
        bits["events"] = lay.ev.bits if lay.ev else 0
        return {**base, "kind": f"{lay.kind}_attention", "state_bits": 0, "paths": [],
                "unit": {"kind": lay.kind, "dims": dm, "lanes": lay.lanes,
                         "sources": [ev.pop for ev in lay.gather.sources],
                         "delays": list(lay.gather.delays)},
                "memory_bits": bits}
    paths = [_path_json(p) for p in lay.paths]
    array = None
    if lay.array is not None:  # one ROM of whole rows and one accumulator register per neuron
        array = {"rows": lay.array.rom.depth, "rom_bits": lay.array.rom.bits, "acc_register_bits": lay.array.aw * lay.n,
                 "owner_path": lay.array.owner, "one_term_payloads": lay.array.pow2}
        for p in paths:
            p["memory_bits"].update(weights=0, accumulators=0)
    return {**base, "kind": "lif", "state_bits": lay.state_width * lay.n, "neuron_lanes": lay.nl, "array": array,
            "paths": paths,
            "memory_bits": {"state": lay.state_width * lay.n, "bias": lay.bias.bits if lay.bias else 0,
                            "vmin": lay.vmin.bits if lay.vmin else 0, "dmin": lay.dmin.bits if lay.dmin else 0,
                            "events": lay.ev.bits if lay.ev else 0}}


def design_json(d: Design) -> dict[str, Any]:
    """What `run` and `rtl_report` need, without importing the graph."""
    return {
        "format": "npuc-rtl-design", "version": DESIGN_VERSION, "graph": d.graph, "top": d.top,
        "profile": d.profile, "steps": d.steps, "lanes": d.lanes, "in_w": d.in_w, "out_w": d.out_w,
        "inputs": [dict(u.host, n=u.n, offset=u.offset, xw=u.xw, ident=u.ident, ev=u.ev.ident) for u in d.inputs],
        "layers": [_stage_json(lay) for lay in d.layers],
        "evlists": [{"ident": ev.ident, "pop": ev.pop, "n": ev.n, "banks": ev.banks, "bits": ev.bits,
                     "copies": 1 + len(ev.copy_banks)} for ev in d.evlists],
        "readouts": [{"layer": r.layer, "node": r.node, "port": r.port, "n": r.n, "width": r.width,
                      "probe": r.probe} for r in d.readouts],
        "outputs": d.outputs,
        "pipeline": None if d.pipeline is None else {
            "groups": [[d.layers[k].node for k in g] for g in d.pipeline.groups], "status_depth": d.pipeline.depth},
        "pipeline_note": d.pipeline_note,
        "input_events": {"index_bits": unsigned_bits(d.words_in), "value_bits": d.in_w - unsigned_bits(d.words_in)}
        if d.input_events else None,
    }


TIMESCALE = "`timescale 1ns / 1ps\n"
MEM_DIR_DEFINE = "NPUC_MEM_DIR"
_MEM_REF = re.compile(r'"mem/([A-Za-z0-9_.]+\.hex)"')


def _with_mem_dir(text: str) -> str:
    """Memory paths ``"mem/x.hex"`` become ``{`NPUC_MEM_DIR, "/x.hex"}`` (a string concatenation,
    legal as a parameter value); the define defaults to ``"mem"``, today's path relative to the
    tool's working directory, and can be set per tool (``+define+NPUC_MEM_DIR=\\"/abs/mem\\"``)."""
    out = _MEM_REF.sub(lambda m: f'{{`{MEM_DIR_DEFINE}, "/{m.group(1)}"}}', text)
    if out == text:
        return text
    return f"`ifndef {MEM_DIR_DEFINE}\n`define {MEM_DIR_DEFINE} \"mem\"\n`endif\n" + out


def verilog_files(d: Design, v: TopView) -> dict[str, str]:
    """Every Verilog source of the design (static blocks, stages, top, AXI4-Stream wrapper),
    each with a `timescale and the memory directory define."""
    env = _env()
    files: dict[str, str] = {
        f"{d.top}.v": env.get_template("top_pipe.v.j2" if v.pipe else "top.v.j2").render(d=v, p=v.pipe)}
    for lv in v.layers:
        unit = isinstance(lv.model, Unit)
        files[f"{lv.module}.v"] = env.get_template("unit.v.j2" if unit else "layer.v.j2").render(
            d=v, L=lv.model, ports=lv.ports)
    for name in d.static_modules or STATIC:
        files[name] = static_source(name)
    files[f"{d.top}_axis.v"] = env.get_template("axis.v.j2").render(d=v)
    return {name: TIMESCALE + _with_mem_dir(text) for name, text in files.items()}


def render(d: Design, out_dir: Path) -> list[Path]:
    """Write the artifact folder (replacing ``out_dir`` atomically) and return its files."""
    env = _env()
    v = view(d)
    files = verilog_files(d, v)
    for mem in d.memories():
        files[mem.path] = mem.hex()
    files[f"tb_{d.top}.py"] = env.get_template("tb.py.j2").render(d=v)
    files[f"harness_{d.top}.cpp"] = env.get_template("harness.cpp.j2").render(d=v)
    meta = design_json(d)
    files[DESIGN_FILE] = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    static = d.static_modules or STATIC
    sources = [*static, *(f"{lv.module}.v" for lv in v.layers), f"{d.top}.v"]
    files["files.f"] = "".join(f"{s}\n" for s in sources)
    mems = sorted(m.path for m in d.memories())
    files.update(integration.files(d.top, [*sources, f"{d.top}_axis.v"], mems))
    files["README"] = env.get_template("README.j2").render(d=v, meta=meta, mems=len(mems))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp", dir=out_dir.parent))
    try:
        for rel, text in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old{tmp.name[-8:]}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / rel for rel in sorted(files)]
