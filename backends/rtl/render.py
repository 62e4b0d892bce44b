"""Print a `Design` through the jinja2 templates of ``npuc.hdl`` and write the artifact folder.

The templates hold loops and fields. A stage's module (``layer.v.j2``, ``unit.v.j2``) prints
the model objects themselves (`Layer` with its `Path` / `AttnPath` list, `Unit`, `Gather`;
their fields are documented in `npuc.backends.rtl.model`) and derives its phase table in the
template. What remains here is the wiring of the top: each stage's event-list read ports
(pointed at a pipelined top's per-stage copies), the event-list read muxes, the input and
readout selects, the pool-count layout and the pipeline's stage conditions.

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
from types import SimpleNamespace
from typing import Any

import jinja2

from . import integration
from .bounds import unsigned_bits
from .lower import STATIC_MODULES, vconst
from .model import AttnPath, Design, Gather, Layer, Unit
from .model import Path as SynPath
from .pipeline import copy_name

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


def static_source(name: str) -> str:
    return resources.files("npuc.hdl").joinpath(name).read_text()


# -- views ------------------------------------------------------------------------------------


def _sext(sig: str, lsb: int, width: int, to: int) -> str:
    msb = lsb + width - 1
    return f"{{{{{to - width}{{{sig}[{msb}]}}}}, {sig}[{msb}:{lsb}]}}"


def _port(name: str, ev, delay: int = 0) -> SimpleNamespace:
    """An event-list read port of a stage module (``delay`` 1: it reads the previous step); a
    pipelined top points ``src`` at the reading stage's copy of the list."""
    return SimpleNamespace(name=name, src=ev.ident, eaw=ev.iaw, dw=ev.dw, delay=delay)


def _stage_ports(lay: Layer | Unit) -> list[SimpleNamespace]:
    if isinstance(lay, Unit):
        return [_port(c, ev, dl) for c, ev, dl in zip("qkv", lay.gather.sources, lay.gather.delays)]
    ports = []
    for p in lay.paths:
        if isinstance(p, AttnPath):
            ports += [_port(f"p{p.index}{c}", ev, dl) for c, ev, dl in zip("qkv", p.gather.sources, p.gather.delays)]
        else:
            ports.append(_port(f"p{p.index}", p.source, p.delay))
    return ports


def _stage_view(lay: Layer | Unit) -> SimpleNamespace:
    """What the top templates print of a stage: its instance wiring. The stage's own module
    (``layer.v.j2``, ``unit.v.j2``) prints the model object itself."""
    pool_w = 0 if isinstance(lay, Unit) else sum(p.pool.qcw for p in lay.paths if p.pool)
    return SimpleNamespace(
        index=lay.index, node=lay.node, n=lay.n, ident=lay.ident, module=lay.module, naw=lay.naw,
        stw=lay.state_width,
        ev=lay.ev.ident if lay.ev else None, ev_dw=lay.ev_dw, ports=_stage_ports(lay), pools=pool_w > 0,
        pool_count_w=pool_w, pool_count_lsb=0, model=lay)


def _or(terms: list[str], zero: str) -> str:
    return " | ".join(terms) if terms else zero


def view(d: Design) -> SimpleNamespace:
    """Template view of a design: every name and expression the templates print."""
    layers = [_stage_view(lay) for lay in d.layers]
    evs = []
    lsb = 0
    for lv in layers:
        lv.pool_count_lsb = lsb
        lsb += lv.pool_count_w
    pool_count_w = lsb
    lsb = 0
    for ev in d.evlists:
        users = [(layers[k].ident, port) for k, port in d.consumers[ev.ident]]
        copies = _copies(d, ev, layers) if d.pipeline else []
        evs.append(SimpleNamespace(copies=copies,
            ident=ev.ident, dw=ev.dw, n=ev.n, iaw=ev.iaw, banks=ev.banks, maw=ev.maw,
            rd_re=_or([f"{li}_{port}_ev_re" for li, port in users], "1'b0"),
            rd_bank=_or([f"{li}_{port}_ev_bank" for li, port in users], "1'b0"),
            rd_addr=_or([f"{li}_{port}_ev_addr" for li, port in users], f"{ev.iaw}'d0"), count_lsb=lsb, pop=ev.pop,
            prod=d.pipeline.producer[ev.ident] if d.pipeline else None))
        lsb += ev.iaw
    readouts = []
    for r in d.readouts:
        sig = f"{layers[r.layer].ident}_ro_data"
        readouts.append(SimpleNamespace(n=r.n, layer=r.layer, expr=_sext(sig, r.lsb, r.width, d.out_w)))
    n_out = sum(1 for r in d.readouts if not r.probe)
    wcw = unsigned_bits(d.words_in)
    inputs = []
    take, pos = ("in_take", "in_pos") if d.pipeline else ("in_fire", "w")
    for u in d.inputs:
        conds = [take]
        if u.offset:
            conds.append(f"({pos} >= {wcw}'d{u.offset})")
        if u.offset + u.n < d.words_in:
            conds.append(f"({pos} < {wcw}'d{u.offset + u.n})")
        inputs.append(SimpleNamespace(**vars(u), valid=" && ".join(conds)))
    steps = d.steps or 1
    return SimpleNamespace(
        graph=d.graph, top=d.top, profile=d.profile, in_w=d.in_w, out_w=d.out_w, layers=layers, evlists=evs,
        inputs=inputs, readouts=readouts, n_out_items=n_out, itw=unsigned_bits(len(d.readouts)),
        rnw=unsigned_bits(max(r.n for r in d.readouts)), liw=unsigned_bits(len(d.layers) - 1),
        wcw=wcw, tw=unsigned_bits(steps), steps_param=steps, words_in=d.words_in,
        words_out=d.readout_words(False), words_probe=d.readout_words(True), ev_count_w=lsb,
        pool_count_w=pool_count_w,
        pools=[SimpleNamespace(layer=lv.ident, path=p.index, lsb=lv.pool_count_lsb + lsb, w=p.pool.qcw)
               for lv in layers for p, lsb in _pool_fields(lv.model)],
        pipe=_pipe_view(d, layers) if d.pipeline else None, events=d.input_events)


def _pool_fields(lay: Layer | Unit) -> list[tuple[SynPath, int]]:
    """A layer's pooled paths and the lsb of each one's event count in the layer's ``pool_counts``."""
    out, lsb = [], 0
    for p in [] if isinstance(lay, Unit) else lay.paths:
        if p.pool is not None:
            out.append((p, lsb))
            lsb += p.pool.qcw
    return out


def _copies(d: Design, ev, layers: list[SimpleNamespace]) -> list[SimpleNamespace]:
    """A pipelined top's copies of an event list, one per reading stage; points every reading port
    of a layer view at its stage's copy."""
    pipe = d.pipeline
    stages = sorted(pipe.readers.get(ev.ident, ())) or [pipe.producer[ev.ident]]
    out = []
    for stage, banks in zip(stages, (ev.banks, *ev.copy_banks)):
        name = copy_name(pipe, ev.ident, stage)
        users = [(k, port) for k, port in d.consumers[ev.ident] if pipe.stage_of(k) == stage]
        for k, port in users:
            next(pt for pt in layers[k].ports if pt.name == port).src = name
        refs = [f"{layers[k].ident}_{port}" for k, port in users]
        out.append(SimpleNamespace(
            ident=name, banks=banks, maw=max(ev.iaw, unsigned_bits(banks * ev.n - 1)),
            rd_re=_or([f"{r}_ev_re" for r in refs], "1'b0"), rd_bank=_or([f"{r}_ev_bank" for r in refs], "1'b0"),
            rd_addr=_or([f"{r}_ev_addr" for r in refs], f"{ev.iaw}'d0")))
    return out


def _pipe_view(d: Design, layers: list[SimpleNamespace]) -> SimpleNamespace:
    """The stage chain of a pipelined top: each stage's start condition (see `npuc.backends.rtl.pipeline`)."""
    pipe = d.pipeline
    nw, last = pipe.nw, pipe.stages - 1

    def cond(k: int) -> str:
        terms = [f"(n_s{k - 1} != n_s{k})"] if k else []
        readers = {c for ev, prod in pipe.producer.items() if prod == k for c in pipe.readers.get(ev, ())}
        delayed = {c for ev, prod in pipe.producer.items() if prod == k for c in pipe.delayed.get(ev, ())}
        if k < last:
            readers.add(k + 1)  # the next stage reads this stage's first flags
        # step s overwrites the bank of step s-2, which a delayed reader still needs for its step s-1
        terms += [f"(n_s{k} == n_s{c})" if c in delayed else f"((n_s{k} - n_s{c}) <= {nw}'d1)"
                  for c in sorted(readers - {k})]
        if k:
            terms.append(f"(n_out == n_s{k})" if k in pipe.readout_groups else f"((PROBE == 0) || (n_out == n_s{k}))")
        terms.append(f"((n_s{k} - n_out) <= {nw}'d{pipe.depth - 2})")
        return " && ".join(terms)

    groups = [SimpleNamespace(id=g, layers=[layers[k] for k in members], lw=unsigned_bits(len(members) - 1),
                              cond=cond(g))
              for g, members in enumerate(pipe.groups, start=1)]
    return SimpleNamespace(stages=pipe.stages, groups=groups, depth=pipe.depth, nw=nw,
                           sw=max(1, pipe.depth.bit_length() - 1), input_cond=cond(0))


# -- files ------------------------------------------------------------------------------------


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
        "index": p.index, "source": p.source.pop, "source_ev": p.source.ident, "delay": p.delay,
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
    return {**base, "kind": "lif", "state_bits": lay.state_width * lay.n,
            "paths": [_path_json(p) for p in lay.paths],
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


def verilog_files(d: Design, v: SimpleNamespace) -> dict[str, str]:
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
