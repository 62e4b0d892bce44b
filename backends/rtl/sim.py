"""Run an emitted RTL design on user inputs: Verilator build (cached) + a generated testbench.

The default testbench is C++ compiled with the design (``harness_<top>.cpp``, run in parallel
processes over chunks of the batch); the cocotb testbench (``tb_<top>.py``) plays the same
protocol and stays for waveforms and cross-checks (``engine="cocotb"``).

The host side reproduces `npuc.sim.encoding` exactly: ``current`` inputs are
quantized with the Input's `QInput` (``quantize_current``), ``spikes`` are
checked integers, and spike encoders receive ``x_q`` (``quantize_unit``) while
the hardware encoder produces the spikes of each step. The output words are
split back into the golden engines' ``[T, B, ...]`` layout and decoded with
the Output's decoding, so a result compares directly with
``npuc.sim.simulate(graph, x, "int")``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ArtifactError, ToolchainError  # noqa: F401  (re-exported)
from ...ir.ops import Input, Output
from ...ir.values import Encoding, QInput
from ...sim.encoding import InputError, decode, encode, quantize_unit, to_time_major
from ...sim.engine import SimResult
from . import toolchain
from .render import DESIGN_FILE, DESIGN_VERSION


def load_design(artifact_dir: Path) -> dict[str, Any]:
    path = Path(artifact_dir) / DESIGN_FILE
    if not path.is_file():
        raise ArtifactError(f"{artifact_dir}: no {DESIGN_FILE}; emit the design with npuc.backends.rtl.emit first")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: unreadable ({e})") from None
    if meta.get("format") != "npuc-rtl-design" or meta.get("version") != DESIGN_VERSION:
        raise ArtifactError(f"{path}: not an npuc RTL design of version {DESIGN_VERSION}; re-emit it")
    return meta


def _input_op(spec: dict[str, Any]) -> Input:
    kind = spec["kind"]
    q = QInput(spec["frac_bits"], spec["bits"]) if kind in ("current", "spikes") else None
    return Input(tuple(spec["shape"]), Encoding(kind, spec["enc_bits"], spec["enc_seed"]), spec["layout"],
                 spec["index"], q)


def encode_words(meta: dict[str, Any], inputs: Any) -> np.ndarray:
    """The input word stream ``[B, T, words]`` (int64) for user inputs, as the hardware expects it.

    Raises:
        InputError: wrong shapes, disagreeing batch/steps, or values that do not fit the input width.
    """
    specs = meta["inputs"]
    arrays = (np.ndarray, torch.Tensor)
    if isinstance(inputs, (list, tuple)) and len(inputs) == len(specs) and all(isinstance(x, arrays) for x in inputs):
        xs = list(inputs)  # one array per Input (also a 1-element list, as `npuc simulate` passes)
    else:
        xs = [inputs]
    if len(xs) != len(specs):
        raise InputError(f"design '{meta['graph']}' takes {len(specs)} input(s), got {len(xs)}")
    blocks = []
    steps = batch = None
    for spec, x in zip(specs, xs):
        op = _input_op(spec)
        tm, t = to_time_major(spec["node"], op, x, meta["steps"])
        if steps is not None and (t != steps or tm.shape[1] != batch):
            raise InputError(f"input '{spec['node']}' disagrees with the other inputs on steps or batch size")
        steps, batch = t, int(tm.shape[1])
        kind = spec["kind"]
        if kind in ("current", "spikes"):
            v = encode(op, tm, t, "int").numpy()
            lo, hi = -(1 << (spec["xw"] - 1)), (1 << (spec["xw"] - 1)) - 1
            if v.size and (v.min() < lo or v.max() > hi):
                raise InputError(f"input '{spec['node']}': integer values span [{v.min()}, {v.max()}], outside the "
                                 f"{spec['xw']}-bit input range [{lo}, {hi}]")
        else:
            xq = quantize_unit(tm[0], spec["bits"])
            v = np.broadcast_to(xq[None], (t, *xq.shape))
        blocks.append(np.asarray(v, dtype=np.int64).reshape(t, batch, -1))
    words = np.ascontiguousarray(np.concatenate(blocks, axis=2).transpose(1, 0, 2))  # [B, T, W]
    if meta.get("input_events"):
        return event_words(words, meta["input_events"])
    return words


def event_words(words: np.ndarray, fmt: dict[str, int]) -> np.ndarray:
    """input=events: ``[B, T, 1 + W]``, per step the count E of nonzero values, then E words
    ``value << index_bits | position`` (values in two's complement of value_bits), zero padded."""
    b, t, w = words.shape
    out = np.zeros((b, t, 1 + w), dtype=np.int64)
    vmask = (1 << fmt["value_bits"]) - 1
    for i in range(b):
        for j in range(t):
            pos = np.flatnonzero(words[i, j])
            out[i, j, 0] = pos.size
            out[i, j, 1:1 + pos.size] = ((words[i, j, pos] & vmask) << fmt["index_bits"]) | pos
    return out


def _poll_progress(paths: list[Path], total: int, stop: threading.Event, enabled: bool) -> None:
    """A tqdm bar over the finished-sample counters the testbench processes write."""
    from tqdm import tqdm

    with tqdm(total=total, desc="rtl sim", unit="sample", disable=not enabled, leave=False) as bar:
        while not stop.wait(0.2):
            done = 0
            for path in paths:
                try:
                    done += int(path.read_text())
                except (OSError, ValueError):
                    continue
            bar.update(done - bar.n)


_HEX_LINE = re.compile(rb"[0-9a-fA-F]+\r?")


def check_memories(art: Path) -> None:
    """Every ``mem/*.hex`` holds one hex word per line (what `emit` writes); anything else
    would make Verilator's ``$readmemh`` fail deep in the simulation."""
    for f in toolchain.memory_images(art):
        for i, line in enumerate(f.read_bytes().split(b"\n"), 1):
            if line and not _HEX_LINE.fullmatch(line):
                raise ArtifactError(f"{f}, line {i}: {line[:20]!r} is not a hex word; recompile the build")


def _fst_available() -> bool:
    return Path("/usr/include/lz4.h").exists()


ENGINES = ("harness", "cocotb")


def run(artifact_dir: str | Path, inputs: Any, probe: bool = False, waves: bool = False,
        progress: bool = True, timeout_cycles: int = 50_000_000, opt: str | None = None,
        reset_check: tuple[int, int] | None = None, engine: str | None = None,
        procs: int | None = None) -> SimResult:
    """Simulate an emitted design with Verilator on user inputs.

    Args:
        artifact_dir: folder written by `npuc.backends.rtl.emit`.
        inputs: what the model's forward takes (one array, or a list for several inputs).
        probe: also return every layer's spikes, ``v`` and (where stored) ``i`` per step
            (builds the top with ``PROBE=1``).
        waves: write a waveform (VCD; FST when lz4 is available) to ``artifact_dir/sim/``
            (always through the cocotb testbench).
        progress: show build/simulation progress on stderr.
        timeout_cycles: abort a step that takes longer (a hung design).
        opt: C++ optimization of the Verilator model (default ``-O2`` for the harness,
            ``-O0`` for cocotb, where the Python testbench dominates).
        reset_check: verification aid ``(step, delay)``: before the run, play the first sample up to
            ``step`` and assert ``rst`` ``delay`` cycles after that step's last input word, in the
            middle of its computation; the results must be unaffected.
        engine: ``"harness"`` (default; ``$NPUC_RTL_ENGINE`` overrides): the generated C++ testbench
            compiled with the design; ``"cocotb"``: the generated cocotb testbench. Both play the
            same protocol and give identical outputs, probes and cycle counts.
        procs: harness processes running chunks of the batch in parallel (default: the usable
            cores, capped by ``$NPUC_RTL_PROCS``).

    Returns:
        `SimResult` with outputs (and probes) in the golden engines' layout;
        ``stats["rtl"]`` holds measured cycles: ``step_cycles`` and
        ``layer_cycles[node]`` (``[T, B]``), their means, events per population
        and step, Verilator build/simulation seconds (``build_cached``: the harness's model came
        from the content-hashed cache) and simulated cycles/s.
    """
    art = Path(artifact_dir).resolve()
    meta = load_design(art)
    words = encode_words(meta, inputs)
    batch, steps, _ = words.shape
    engine = _pick_engine(art, meta, engine, waves, progress)
    if reset_check is not None:
        step, delay = (int(v) for v in reset_check)
        if not 0 <= step < steps or delay < 0:
            raise ValueError(f"reset_check step must be in 0..{steps - 1} and delay >= 0, got {reset_check}")
        reset_check = (step, delay)
    t0 = time.perf_counter()
    sources = _checked_sources(art)
    if engine == "harness":
        res, timing = _simulate_harness(art, meta, sources, words, probe, progress, timeout_cycles,
                                        opt or "-O2", reset_check, procs)
    else:
        res, timing = _simulate(art, meta, sources, words, probe, waves, progress, timeout_cycles,
                                opt or "-O0", reset_check)
    outputs, names, probes = _decode_readouts(meta, res["out"], probe, steps, batch)
    stats = {"rtl": _rtl_stats(meta, res, timing, probe)}
    return SimResult(outputs, names, steps, probes, stats, time.perf_counter() - t0)


def _pick_engine(art: Path, meta: dict, engine: str | None, waves: bool, progress: bool) -> str:
    engine = engine or os.environ.get("NPUC_RTL_ENGINE") or "harness"
    if engine not in ENGINES:
        raise ValueError(f"RTL simulation engine {engine!r} is not one of {', '.join(ENGINES)}")
    if waves:
        return "cocotb"  # waveforms come from the cocotb runner's traced build
    if engine == "harness" and not (art / f"harness_{meta['top']}.cpp").is_file():
        if progress:
            print(f"rtl: {art} has no compiled testbench (emitted by an older npuc); using cocotb",
                  file=sys.stderr)
        return "cocotb"
    return engine


def _checked_sources(art: Path) -> list[Path]:
    sources = toolchain.design_sources(art)
    missing = [s for s in sources if not s.is_file()]
    if missing:
        raise ArtifactError(f"{art}: missing source files {[m.name for m in missing]}; re-emit the design")
    check_memories(art)
    return sources


def _simulate(art: Path, meta: dict, sources: list[Path], words: np.ndarray, probe: bool, waves: bool,
              progress: bool, timeout_cycles: int, opt: str,
              reset_check: tuple[int, int] | None) -> tuple[dict, dict]:
    """cocotb path: build (cached) and run the generated testbench on the encoded words; returns
    the testbench's arrays and the build / simulation seconds, build folder and copied waveform."""
    batch = words.shape[0]
    t0 = time.perf_counter()
    fst = waves and _fst_available()
    if progress:
        print(f"rtl: building {meta['top']} with Verilator{' (waves)' if waves else ''} ...", file=sys.stderr)
    build_dir = toolchain.build(sources, meta["top"], {"PROBE": int(probe)}, waves=waves, opt=opt)
    timing: dict[str, Any] = {"build": time.perf_counter() - t0, "build_dir": build_dir, "wave_file": None,
                              "engine": "cocotb", "procs": 1}
    run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=toolchain.cache_root()))
    try:
        (run_dir / "mem").symlink_to(art / "mem", target_is_directory=True) if (art / "mem").is_dir() else None
        tb = f"tb_{meta['top']}"
        shutil.copy2(art / f"{tb}.py", run_dir / f"{tb}.py")
        np.savez(run_dir / "stim.npz", words=words)
        env = {"NPUC_RTL_STIM": str(run_dir / "stim.npz"), "NPUC_RTL_RESULT": str(run_dir / "result.npz"),
               "NPUC_RTL_PROGRESS": str(run_dir / "progress"), "NPUC_RTL_TIMEOUT": str(int(timeout_cycles)),
               "NPUC_RTL_PROBE": str(int(probe))}
        if reset_check is not None:
            env["NPUC_RTL_ABORT"] = "{},{}".format(*reset_check)
        stop = threading.Event()
        poller = threading.Thread(target=_poll_progress, args=([run_dir / "progress"], batch, stop, progress),
                                  daemon=True)
        poller.start()
        sys.path.insert(0, str(run_dir))  # the runner exports sys.path as PYTHONPATH
        t1 = time.perf_counter()
        try:
            toolchain.run_test(build_dir, meta["top"], tb, run_dir, env, waves=waves)
        finally:
            sys.path.remove(str(run_dir))
            stop.set()
            poller.join()
        timing["sim"] = time.perf_counter() - t1
        with np.load(run_dir / "result.npz") as f:
            res = {k: f[k] for k in ("out", "step_cycles", "layer_cycles", "events", "pooled", "latency")}
        if waves:
            src = run_dir / ("dump.fst" if fst else "dump.vcd")
            if src.exists():
                (art / "sim").mkdir(exist_ok=True)
                timing["wave_file"] = art / "sim" / src.name
                shutil.copy2(src, timing["wave_file"])
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return res, timing


def harness_procs(batch: int, procs: int | None = None) -> int:
    """Harness processes for a batch: ``procs`` or the usable cores, capped by ``$NPUC_RTL_PROCS``
    and by the batch size."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    n = procs if procs is not None else cores
    cap = os.environ.get("NPUC_RTL_PROCS")
    if cap:
        try:
            n = min(n, int(cap))
        except ValueError:
            raise ValueError(f"NPUC_RTL_PROCS must be a positive integer, got {cap!r}") from None
    return max(1, min(n, batch))


def _simulate_harness(art: Path, meta: dict, sources: list[Path], words: np.ndarray, probe: bool,
                      progress: bool, timeout_cycles: int, opt: str, reset_check: tuple[int, int] | None,
                      procs: int | None) -> tuple[dict, dict]:
    """Compiled path: build the design with its C++ testbench (cached) and run chunks of the batch
    in parallel processes. Each process starts from reset and first replays the sample before its
    chunk: ``in_first`` clears a sample's numeric state, but cycle counts can depend on what ran
    before (the first step after reset can take longer), and the replay makes them equal to one
    sequential run's."""
    batch, steps, _ = words.shape
    top = meta["top"]
    t0 = time.perf_counter()
    harness, params = art / f"harness_{top}.cpp", {"PROBE": int(probe)}
    cached = toolchain.is_built(toolchain.harness_dir(sources, top, harness, params, opt))
    if progress:
        print(f"rtl: {'cached' if cached else 'building'} {top} Verilator model (compiled testbench, {opt})"
              f"{'' if cached else ' ...'}", file=sys.stderr)
    exe = toolchain.build_harness(sources, top, harness, params, opt=opt)
    n = harness_procs(batch, procs)
    timing: dict[str, Any] = {"build": time.perf_counter() - t0, "build_dir": exe.parent, "wave_file": None,
                              "engine": "harness", "procs": n, "build_cached": cached}
    bounds = np.linspace(0, batch, n + 1).astype(int)
    run_dir = Path(tempfile.mkdtemp(prefix="hrun_", dir=toolchain.cache_root()))
    try:
        jobs = []
        for k in range(n):
            stim = run_dir / f"stim{k}.bin"
            warm = int(k > 0)  # replay the previous chunk's last sample first (see the harness's --warmup)
            chunk = words[bounds[k] - warm:bounds[k + 1]]
            with open(stim, "wb") as f:
                np.asarray(chunk.shape, dtype="<i8").tofile(f)
                np.ascontiguousarray(chunk, dtype="<i8").tofile(f)
            cmd = [str(exe), str(stim), str(run_dir / f"result{k}.bin"), str(run_dir / f"progress{k}"),
                   "--timeout", str(int(timeout_cycles)), "--warmup", str(warm)] + (["--probe"] if probe else [])
            if reset_check is not None and k == 0:
                cmd += ["--abort", "{},{}".format(*reset_check)]
            jobs.append(cmd)
        stop = threading.Event()
        poller = threading.Thread(target=_poll_progress, daemon=True,
                                  args=([run_dir / f"progress{k}" for k in range(n)], batch, stop, progress))
        poller.start()
        t1 = time.perf_counter()
        try:
            toolchain.run_harness(jobs, cwd=art)
        finally:
            stop.set()
            poller.join()
        timing["sim"] = time.perf_counter() - t1
        parts = [np.fromfile(run_dir / f"result{k}.bin", dtype="<i8") for k in range(n)]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return _split_records(meta, np.concatenate(parts), probe, batch, steps), timing


def _split_records(meta: dict, flat: np.ndarray, probe: bool, batch: int, steps: int) -> dict[str, np.ndarray]:
    """The harness's per-step records -> the arrays the cocotb testbench saves."""
    n_out = sum(r["n"] for r in meta["readouts"] if probe or not r["probe"])
    n_lay, n_ev = len(meta["layers"]), len(meta["evlists"])
    n_pool = sum(1 for lay in meta["layers"] for p in lay["paths"] if p.get("pool"))
    rec = n_out + 1 + n_lay + n_ev + n_pool + 1
    if flat.size != batch * steps * rec:
        raise ToolchainError(f"compiled testbench wrote {flat.size} words, expected {batch * steps * rec}")
    a = flat.reshape(batch, steps, rec)
    cuts = np.cumsum([n_out, 1, n_lay, n_ev])
    return {"out": a[:, :, :cuts[0]], "step_cycles": a[:, :, cuts[0]], "layer_cycles": a[:, :, cuts[1]:cuts[2]],
            "events": a[:, :, cuts[2]:cuts[3]], "pooled": a[:, :, cuts[3]:-1], "latency": a[:, 0, -1]}


def _decode_readouts(meta: dict, out: np.ndarray, probe: bool, steps: int,
                     batch: int) -> tuple[list[np.ndarray], list[str], dict | None]:
    """The output words of every step -> the graph's outputs (decoded as the golden engines do)
    and, with ``probe``, every layer's state fields."""
    readouts = [r for r in meta["readouts"] if probe or not r["probe"]]
    traces: dict[tuple[int, str], np.ndarray] = {}
    col = 0
    for r in readouts:
        block = out[:, :, col:col + r["n"]].transpose(1, 0, 2)  # [T, B, n]
        shape = tuple(meta["layers"][r["layer"]]["shape"])
        traces[(r["layer"], r["port"])] = block.reshape(steps, batch, *shape)
        col += r["n"]
    outputs, names = [], []
    for o in sorted(meta["outputs"], key=lambda o: o["index"]):
        r = meta["readouts"][o["readout"]]
        v = traces[(r["layer"], r["port"])].reshape(steps, batch, *o["shape"])
        op = Output(o["decoding"], o["layout"], o["index"])
        outputs.append(decode(op, torch.from_numpy(np.ascontiguousarray(v))).numpy())
        names.append(o["name"])
    probes = None
    if probe:
        probes = {}
        for (k, port), v in traces.items():
            probes.setdefault(meta["layers"][k]["node"], {})[port] = v
    return outputs, names, probes


def _rtl_stats(meta: dict, res: dict, timing: dict, probe: bool) -> dict[str, Any]:
    """Measured cycles ([T, B] per step and per layer, and their means), events, seconds."""
    step_cycles, layer_cycles, events = res["step_cycles"], res["layer_cycles"], res["events"]
    total_cycles = int(step_cycles.sum())
    t_sim = timing["sim"]
    wave_file = timing["wave_file"]
    return {
        "step_cycles": step_cycles.T.copy(),
        "layer_cycles": {lay["node"]: layer_cycles[:, :, lay["index"]].T.copy() for lay in meta["layers"]},
        "cycles_per_step": float(step_cycles.mean()),
        "latency_cycles": res["latency"].copy(),  # [B]: a sample's first input cycle .. its last output word
        "latency_cycles_mean": float(res["latency"].mean()),
        "layer_cycles_per_step": {lay["node"]: float(layer_cycles[:, :, lay["index"]].mean())
                                  for lay in meta["layers"]},
        "events": {ev["pop"]: events[:, :, j].T.copy() for j, ev in enumerate(meta["evlists"])},
        "pooled": res["pooled"].transpose(1, 0, 2).copy(),
        "build_seconds": round(timing["build"], 3), "build_cached": timing.get("build_cached"), "sim_seconds": round(t_sim, 3), "cycles": total_cycles,
        "cycles_per_second": round(total_cycles / t_sim, 1) if t_sim > 0 else None,
        "build_dir": str(timing["build_dir"]), "waves": str(wave_file) if wave_file else None,
        "engine": timing["engine"], "procs": timing["procs"],
        "lanes": meta["lanes"], "probe": bool(probe),
    }


def speed_line(rtl: dict[str, Any]) -> str | None:
    """One line for a CLI: cycles simulated, their rate, which testbench, and whether the Verilator
    model came from the cache (``rtl``: a `run` result's ``stats["rtl"]``)."""
    if not rtl.get("cycles_per_second"):
        return None
    how = ("compiled testbench, " + (f"{rtl['procs']} processes" if rtl["procs"] > 1 else "1 process")
           if rtl.get("engine") == "harness" else "cocotb testbench")
    build = {True: "; Verilator model reused from the cache",
             False: f"; Verilator build {rtl['build_seconds']:.1f} s"}.get(rtl.get("build_cached"), "")
    return (f"rtl: {rtl['cycles']:,} cycles simulated in {rtl['sim_seconds']:.2f} s "
            f"({rtl['cycles_per_second']:,.0f} cycles/s, {how}){build}")


__all__ = ["run", "encode_words", "load_design", "speed_line", "ArtifactError"]
