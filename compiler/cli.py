"""The ``npuc`` command line.

Verbs: ``compile``, ``simulate``, ``verify``, ``report``, ``inspect``, ``demo``, ``explore``,
``evaluate``.
User errors (bad files, unsupported layers, mismatched inputs) print one line
``npuc: error: ...`` and exit with status 2 (``verify`` exits 1 on a mismatch);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .backends import engines
from .errors import NpucError, NpucWarning
from .inputs import (
    accuracy,
    batch_size,
    check_output_path,
    load_inputs,
    load_labels_for,
    save_outputs,
)
from .limits import MAX_STEPS_DEFAULT, set_max_steps

SIM_CHUNK = 8192  # samples per chunk of the integer engine on large inputs (bounded memory)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return n


# -- verbs -------------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from .builddir import BuildDir
    from .sim import simulate

    bd = BuildDir(args.dir)
    # golden engines stream a .npy (memory-mapped, evaluated in chunks); backends take arrays
    golden = args.engine in ("float", "int")
    xs = load_inputs(args.input, mmap=golden)
    check_output_path(args.out)
    labels = _labels(args, bd, xs)
    if args.engine == "float":
        graph = bd.float_graph()
    elif args.engine == "int":
        graph = bd.int_graph(args.target)
    else:
        return _simulate_backend(bd, args, xs, labels)
    # the integer engine is exact at any chunk size; the float engine equals the model's forward
    # on the batch it is given, so it chunks only when asked
    chunk = args.chunk or (SIM_CHUNK if args.engine == "int" and batch_size(graph, xs) > SIM_CHUNK else None)
    res = simulate(graph, xs if len(xs) > 1 else xs[0], engine=args.engine, chunk=chunk, threads=args.threads)
    on = f" on {res.threads} threads" if res.threads > 1 else ""
    _print(f"simulated '{graph.name}' ({len(graph)} nodes) with the {args.engine} engine: "
           f"{res.steps} steps x batch {batch_size(graph, xs)} in {res.seconds:.3f} s{on}")
    _print_outputs(graph, res, labels)
    if res.stats:
        for node, counts in res.stats.items():
            _print(f"  overflow events in {node}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if args.out:
        save_outputs(args.out, res.output_names, res.outputs)
        _print(f"wrote {args.out}")
    return 0


def _simulate_backend(bd, args: argparse.Namespace, xs: list[np.ndarray], labels: np.ndarray | None) -> int:
    from .backends import check_target_kind, for_engine, run_engine
    from .backends.rtl.sim import speed_line

    res = run_engine(bd, args.engine, xs, target=args.target, waves=getattr(args, "waves", False),
                     allow_modified=args.allow_modified)
    target = check_target_kind(bd, args.engine, args.target) if args.target else \
        bd.target_for_kind(for_engine(args.engine).kind)
    _print_outputs(bd.int_graph(target), res, labels)
    rtl = res.stats.get("rtl") or {}
    line = speed_line(rtl)
    if line:
        _print("  " + line)
    lava = res.stats.get("lava") or {}
    if lava.get("steps_per_s"):
        _print(f"  Lava: {lava['steps']:,} time steps, {lava['steps_per_s']:,} steps/s at steady state "
               f"({lava['steady_us'] / 1e6:.2f} s), process build and first step {lava['build_us'] / 1e6:.2f} s")
    wave_file = rtl.get("waves")
    if wave_file:
        _print(f"  waveform: {wave_file}")
    if args.out:
        save_outputs(args.out, res.output_names, res.outputs)
        _print(f"wrote {args.out}")
    return 0


def _labels(args: argparse.Namespace, bd, xs: list[np.ndarray]) -> np.ndarray | None:
    return load_labels_for(args.labels, bd.float_graph(), xs) if getattr(args, "labels", None) else None


def _print_outputs(graph, res, labels: np.ndarray | None) -> None:
    for name, out in zip(res.output_names, res.outputs):
        _print(f"  output {name}: shape {list(out.shape)} dtype {out.dtype}")
    if labels is not None:
        _print(f"  accuracy: {accuracy(res.outputs[0], graph.outputs()[0].op, labels):.4f} "
               f"on {len(labels)} labelled samples")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .builddir import BuildDir
    from .ir.dump import dump

    bd = BuildDir(args.dir)
    graph = bd.float_graph() if args.target is None and (bd.bare or not args.quantized) else bd.int_graph(args.target)
    print(dump(graph))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from .driver import compile_cli

    return compile_cli(args)


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_cli

    return verify_cli(args)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report_cli

    return report_cli(args)


def cmd_export(args: argparse.Namespace) -> int:
    from .exporting import export_cli

    return export_cli(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _print(msg: str) -> None:
    print(msg, file=sys.stderr)


TRUSTED_BUILD = ("A build directory holds generated code that the lava and rtl engines execute (the Lava "
                 "module, the Verilog and its cocotb and C++ testbenches): treat it as trusted code, like a checkpoint "
                 "loaded with --trust-checkpoint. npuc records a SHA-256 of every generated file at compile time "
                 "and refuses a build edited since, unless you pass --allow-modified.")
ALLOW_MODIFIED = "run a build whose generated files changed since compile (you trust the change)"


# -- parser ------------------------------------------------------------------------------


def _add_compile(sub) -> None:
    """`npuc compile`."""
    c = sub.add_parser("compile", help="compile a model (file.py:factory, package.module:factory or .nir) to hardware")
    c.add_argument("model", help="file.py:factory, package.module:factory, a .nir or an .onnx file")
    c.add_argument("--checkpoint", help="state_dict checkpoint (.pt) loaded with torch.load(weights_only=True)")
    c.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a checkpoint that needs arbitrary pickled classes (executes code from the file)")
    c.add_argument("--example-input", required=False, help=".npy input the model's forward takes (traces shapes, calibrates)")
    c.add_argument("--calibration", help=".npy/.npz calibration inputs (default: the example input)")
    c.add_argument("--labels", help=".npy labels for the calibration inputs (reports accuracy)")
    c.add_argument("--target", action="append", default=[], metavar="TARGET",
                   help="loihi2, fpga, fpga:weight_bits=6,state_bits=12,..., or a target JSON file (repeatable)")
    c.add_argument("--pipeline", action="append", metavar="[TARGET=]PASSES",
                   help="pass pipeline instead of the target's, e.g. 'fold-batchnorm,legalize,quantize{percentile=99.9},"
                   "map-cores{order=chw},place-cores' (prefix TARGET= to set one target's; repeatable)")
    c.add_argument("--steps", type=int, help="time steps for a model whose forward takes no time axis")
    c.add_argument("--ann-to-snn", action="store_true",
                   help="the model is a ReLU network: convert ReLUs to IF neurons (subtract reset) over --steps T, "
                   "thresholds balanced on the calibration data, input as a constant current, output as spike counts")
    c.add_argument("--dt", type=float, metavar="SECONDS",
                   help=".nir models: Euler time step (default: the file's npuc.dt, else 1e-4)")
    c.add_argument("--reset", choices=("subtract", "value"),
                   help=".nir models: neuron reset (default: to v_reset if the node has one, else subtract)")
    c.add_argument("--max-steps", type=int, metavar="N",
                   help=f"refuse graphs with more than N time steps (default {MAX_STEPS_DEFAULT:,}, or NPUC_MAX_STEPS)")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--allow-approx", action="store_true",
                   help="approximate neuron features a target lacks (e.g. subtract reset on Loihi 2) instead of failing")
    c.add_argument("--stock-only", action="store_true",
                   help="loihi2: lava-nc's stock processes only, no custom neuron processes (same as "
                   "--target loihi2:stock_only=1)")
    c.add_argument("--verbose", "-v", action="store_true", help="print each pass and its effect")
    c.set_defaults(fn=cmd_compile)


def _add_simulate(sub) -> None:
    """`npuc simulate`."""
    s = sub.add_parser("simulate", help="run a compiled graph with an engine",
                       description="Run a build with the float or integer golden engine, or with a hardware "
                       "engine (lava, rtl). " + TRUSTED_BUILD)
    s.add_argument("dir", help="build directory from 'npuc compile' (or a graph directory)")
    s.add_argument("--engine", choices=("float", "int", *engines()), default="float")
    s.add_argument("--input", required=True, help=".npy (or .npz for several inputs) in the model's input layout")
    s.add_argument("--out", help="write outputs to .npy (.npz for several outputs)")
    s.add_argument("--target", help="which compiled target (when there are several)")
    s.add_argument("--labels", help=".npy class labels for the inputs: print the accuracy")
    s.add_argument("--allow-modified", action="store_true", help="lava/rtl engines: " + ALLOW_MODIFIED)
    s.add_argument("--chunk", type=_positive_int, metavar="N",
                   help=f"float/int engines: evaluate N samples at a time (bounded memory; int default {SIM_CHUNK} "
                   "when the input has more samples)")
    s.add_argument("--threads", type=_positive_int, metavar="N",
                   help="int engine: run parts of the batch in N threads at once (default: one per core, "
                   "at most one per 16 samples; the results do not depend on it)")
    s.add_argument("--waves", action="store_true",
                   help="rtl engine: write a waveform (VCD; FST when lz4 is installed) to DIR/rtl/sim/")
    s.set_defaults(fn=cmd_simulate)


def _add_verify(sub) -> None:
    """`npuc verify`."""
    v = sub.add_parser("verify", help="compare a hardware engine with the golden integer engine",
                       description="Run a hardware engine (Lava fixed_pt or Verilator) on a build and compare "
                       "every layer with the golden integer engine. " + TRUSTED_BUILD)
    v.add_argument("dir")
    v.add_argument("--engine", choices=engines(), required=True)
    v.add_argument("--input", required=True)
    v.add_argument("--target", help="which compiled target (when there are several)")
    v.add_argument("--labels", help=".npy class labels for the inputs: also print the engine's accuracy")
    v.add_argument("--allow-modified", action="store_true", help=ALLOW_MODIFIED)
    v.set_defaults(fn=cmd_verify)


def _add_report(sub) -> None:
    """`npuc report`."""
    r = sub.add_parser("report", help="resources, mapping, energy and quantization error of a build")
    r.add_argument("dir")
    r.add_argument("--json", action="store_true", help="print report.json instead of tables")
    r.add_argument("--input", help="FPGA builds: run the RTL on this .npy to measure cycles per step")
    r.add_argument("--synth", action="store_true",
                   help="FPGA builds: Yosys resources per layer, and for ice40/ecp5 place and route with nextpnr "
                   "(Fmax, utilisation, fits) into report.json targets.<fpga>.synth")
    r.add_argument("--family", choices=("ice40", "ecp5", "xilinx", "generic"), default="ice40",
                   help="with --synth: synth_ice40 + nextpnr-ice40, synth_ecp5 + nextpnr-ecp5, synth_xilinx for "
                   "7-series (resources only, no P&R) or generic cells (per-layer estimate only); default ice40")
    r.add_argument("--device", help="with --synth: the part (ice40: hx1k, hx8k, up5k; ecp5: 12k, 25k, 45k, 85k; "
                   "xilinx: xc7a35t, xc7a100t; default hx8k / 85k / xc7a35t)")
    r.add_argument("--allow-modified", action="store_true", help="with --input: " + ALLOW_MODIFIED)
    r.set_defaults(fn=cmd_report)


def _add_inspect_export_demo(sub) -> None:
    """`npuc inspect`, `npuc export` and `npuc demo`."""
    i = sub.add_parser("inspect", help="print a graph: nodes, shapes, parameters")
    i.add_argument("dir")
    i.add_argument("--target", help="show the quantized graph of a target")
    i.add_argument("--quantized", action="store_true", help="show the quantized graph (single target)")
    i.set_defaults(fn=cmd_inspect)

    e = sub.add_parser("export", help="write a build's float graph as a NIR file or an ONNX model")
    e.add_argument("dir", help="build directory from 'npuc compile'")
    e.add_argument("--format", choices=("nir", "onnx"), required=True)
    e.add_argument("--out", required=True, help="output file (.nir / .onnx)")
    e.add_argument("--runtime", action="store_true",
                   help="onnx: the form onnxruntime runs (standard operators; neuron state as inputs/outputs, "
                   "one call per time step) instead of npuc's exact round-trip form")
    e.add_argument("--dt", type=float, metavar="SECONDS", help="nir: the Euler time step written into the file")
    e.set_defaults(fn=cmd_export)

    d = sub.add_parser("demo", help="train, compile, simulate and verify a bundled model end to end")
    d.add_argument("--out", default="npuc-demo", help="output directory (default: ./npuc-demo)")
    d.add_argument("--quick", action="store_true", help="fewer hardware samples (used by the test suite)")
    d.add_argument("--no-synth", action="store_true", help="skip Yosys resource estimates (the first run takes ~1 min)")
    d.set_defaults(fn=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="npuc",
        description="Compile trained spiking neural networks to Loihi 2 (Lava) and FPGA (Verilog), "
        "and verify them bit-exact against golden simulators.",
    )
    p.add_argument("--version", action="version", version=f"npuc {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    _add_compile(sub)
    _add_simulate(sub)
    _add_verify(sub)
    _add_report(sub)
    _add_inspect_export_demo(sub)

    from .dse.cli import add_parsers  # explore, evaluate

    add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    fn: Callable[[argparse.Namespace], int] = args.fn
    if not args.debug:
        warnings.showwarning = _show_warning
    # SIGTERM unwinds like Ctrl-C, so a killed compile removes its temporary build directory
    signal.signal(signal.SIGTERM, _terminate)
    if args.debug:
        set_max_steps(getattr(args, "max_steps", None))
        return fn(args)
    try:
        set_max_steps(getattr(args, "max_steps", None))
        return fn(args)
    except NpucError as e:
        print(f"npuc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("npuc: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BrokenPipeError:  # e.g. `npuc report DIR | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


_SHOWN: set[str] = set()


def _package_dirs() -> tuple[Path, ...]:
    """The folders npuc's subpackages live in (the checkout's compiler/, ir/, ... when editable)."""
    import importlib.util

    dirs = []
    for name in ("npuc", "npuc.ir", "npuc.frontends", "npuc.backends", "npuc.sim"):
        spec = importlib.util.find_spec(name)
        dirs += [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    return tuple(dirs)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """npuc's warnings as one ``npuc: warning:`` line each (once per message); warnings from
    other libraries (torch.jit deprecations, Lava internals) are noise here (``--debug`` shows them)."""
    text = str(message)
    where = Path(filename).resolve()
    ours = issubclass(category, NpucWarning) or any(where.is_relative_to(d) for d in _package_dirs())
    if ours and text not in _SHOWN:
        _SHOWN.add(text)
        print(f"npuc: warning: {text}", file=sys.stderr)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
