"""npuc.backends.rtl: Verilog for FPGAs from a quantized graph, verified with Verilator + cocotb.

* `emit(graph, out_dir, target)`: lower the graph to the RTL object model
  (`npuc.backends.rtl.lower`) and print it through the jinja2 templates of
  ``npuc.hdl`` (`npuc.backends.rtl.render`).
* `run(artifact_dir, inputs, probe=False, waves=False)`: build with Verilator and
  run the generated testbench (by default the compiled C++ one, in parallel
  processes; ``engine="cocotb"`` or ``waves=True``: the cocotb one); returns a
  `npuc.sim.engine.SimResult` in the golden engines' layout.
* `rtl_report(graph, artifact_dir, run_result=None)`: cycles per step against
  the event-driven bound, and Yosys resource estimates per layer.
* `lint(artifact_dir)`: ``verilator --lint-only -Wall`` on the emitted design.
* `npuc.backends.rtl.sc_stats`: stochastic-computing characterization in RTL
  (LFSR bank, comparator encoders, AND multipliers, MUX adder, counters).

Attention ops map to hardware units too: SpikeAttention paths (`npuc_attn`),
StochasticAttention (`npuc_sc_attn`) and LinearAttention (`npuc_linattn`)
populations, see `npuc.backends.rtl.lower_attention`.
See ``docs/rtl-backend.md`` for the architecture and the supported ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import RtlSupportError
from .. import Backend, Option, flag, positive_int, positive_number, register


def _lanes_option(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(value)
    except ValueError:
        raise ValueError("must be an integer >= 1 or 'auto'") from None


def _array_option(value: Any) -> int | str:
    text = str(value).strip()
    if text in ("0", "1"):
        return int(text)
    if not text or any(not part for part in text.split("+")):
        raise ValueError("must be 0, 1, auto or LIF node names joined by '+'")
    return text


def _input_option(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("dense", "events"):
        raise ValueError("must be 'dense' or 'events'")
    return text


register(Backend(
    kind="fpga", engine="rtl", folder="rtl", module=__name__,
    pipeline="fold-batchnorm,legalize,quantize",
    options={
        "lanes": Option(_lanes_option, "synapse lanes per layer (output neurons updated per cycle); auto: per layer, "
                                       "sized to the pipeline's pace from the calibration firing rates"),
        "clock_mhz": Option(positive_number, "clock for latency estimates when no place-and-route figure exists"),
        "input": Option(_input_option, "dense: one word per input element per step; events: a count word, then one "
                                       "{value, position} word per nonzero value (current / spikes inputs)"),
        "lut_budget": Option(positive_int, "size each layer's lanes for the fastest design whose estimated LUT4 count "
                                           "fits (from the calibration firing rates, like lanes=auto)"),
        "bram_budget": Option(positive_int, "as lut_budget, for estimated 18 kbit block RAMs (ecp5 DP16KD, Xilinx "
                                            "RAMB18)"),
        "latency_us": Option(positive_number, "size each layer's lanes for the smallest design whose latency per "
                                              "sample at clock_mhz meets this (with a budget: within it)"),
        "neuron_lanes": Option(flag, "1: a layer whose synapse paths are all dense with the same L > 1 lanes updates "
                                     "L neurons per cycle (neuron pass ceil(N / L) cycles); 0: one neuron per cycle"),
        "array": Option(_array_option, "1: every layer of dense paths (feed-forward and recurrent) becomes a neuron "
                                       "array: one accumulator register per neuron shared by its paths, one event per "
                                       "cycle adds a whole weight row; or the LIF node names joined by '+'; auto: "
                                       "lut_budget / bram_budget / latency_us may choose array layers"),
        "array_nl": Option(positive_int, "neurons an array layer's update walks per cycle (default 16)"),
        "pipeline": Option(flag, "1: layers (and the input stream) work on consecutive time steps at once; "
                                 "0: one step at a time, layer after layer"),
    },
    description="Verilog for FPGAs (Verilator + cocotb simulation, Yosys resources)",
))

__all__ = ["emit", "run", "rtl_report", "lint", "RtlSupportError"]


def emit(graph: Any, out_dir: str | Path, target: Any = None, version: str | None = None) -> list[Path]:
    """Write the RTL artifacts of a quantized graph into ``out_dir`` (replaced atomically).

    Args:
        graph: quantized `npuc.ir.Graph` (``graph.profile`` set, integer parameters on every node).
        out_dir: the build directory's ``rtl/`` folder.
        target: `npuc.targets.Target` or a target spec such as ``"fpga:lanes=4"``
            (default ``"fpga"``); its ``fpga["lanes"]`` sets the synapse lanes.

    Returns:
        The written files, sorted.

    Raises:
        RtlSupportError: an op, option or structure without an RTL mapping (names the node).
    """
    from .lower import lower
    from .render import render

    if target is None or isinstance(target, str):
        from npuc.targets import load_target

        target = load_target(target or "fpga")
    lanes = target.options.get("lanes", 1)
    if lanes != "auto" and not any(target.options.get(k) is not None for k in ("lut_budget", "bram_budget",
                                                                                "latency_us")):
        _check_lanes(graph, int(lanes))
    return render(lower(graph, target), Path(out_dir))


def _check_lanes(graph: Any, lanes: int) -> None:
    """Lanes update that many output neurons of a layer per cycle: more lanes than the widest
    layer has neurons only add empty hardware (and a huge design)."""
    import numpy as np

    from ...ir.ops import LIF

    sizes = {n.name: int(np.prod(n.shape)) for n in graph if isinstance(n.op, LIF)}
    if not sizes:
        return
    widest = max(sizes, key=sizes.get)
    if lanes > sizes[widest]:
        raise RtlSupportError(f"target option lanes={lanes} exceeds the widest layer ('{widest}', "
                              f"{sizes[widest]} neurons): use lanes <= {sizes[widest]}")


def run(artifact_dir: str | Path, inputs: Any, probe: bool = False, waves: bool = False, **kw: Any):
    """Simulate the emitted design on user inputs (see `npuc.backends.rtl.sim.run`)."""
    from .sim import run as _run

    return _run(artifact_dir, inputs, probe=probe, waves=waves, **kw)


def rtl_report(graph: Any, artifact_dir: str | Path, run_result: Any = None, **kw: Any) -> dict:
    """Cycles and resources per layer (see `npuc.backends.rtl.report.rtl_report`)."""
    from .report import rtl_report as _report

    return _report(graph, artifact_dir, run_result, **kw)


def lint(artifact_dir: str | Path, probe: bool = False) -> list[tuple[str, str, str, int, str]]:
    """``verilator --lint-only -Wall`` on an emitted design; ``[]`` when clean."""
    from .toolchain import lint_design

    return lint_design(Path(artifact_dir), probe=probe)
