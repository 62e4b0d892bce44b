"""The layout of a compile output directory, and how one is written safely.

::

    DIR/manifest.json      what was compiled (format marker, model, targets, steps, npuc version,
                           and a SHA-256 of every generated file)
    DIR/graph/             the float graph (source semantics)
    DIR/<target>/          the quantized graph for each target (integer semantics)
    DIR/lava/              Lava module + netx HDF5 (target loihi2)
    DIR/rtl/               Verilog, memories, cocotb testbench (target fpga)
    DIR/report.json        pass log, resources, quantization error (``npuc report`` updates it)
    DIR/report/            plots (redrawn by ``npuc report``)

A directory is an npuc build only if its manifest carries npuc's format marker
(`FORMAT`); `write_build` replaces nothing else, so a user's directory that merely
holds a ``manifest.json`` is never deleted. A directory that holds ``graph.json``
directly is accepted as a bare graph for reading.

A build contains generated Python (the Lava module, the cocotb testbench) and
Verilog that the hardware engines execute: it is trusted code, like a checkpoint
loaded with ``--trust-checkpoint``. `BuildDir.check_unmodified` refuses a build
whose files changed after compile unless the user accepts it (``--allow-modified``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import BuildDirError
from .ir import Graph
from .ir.serialize import GRAPH_FILE

MANIFEST = "manifest.json"
FORMAT = "npuc-build"
FORMAT_VERSION = 2
UNHASHED = ("manifest.json", "report.json", "report")
"""Top-level entries npuc itself rewrites after compile (not covered by the file hashes)."""


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of ``path`` if it is an npuc build (format marker present), else None."""
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


RUNTIME_FOLDERS = ("rtl/sim/", "rtl/sim_build/", "rtl/obj_dir/", "lava/__pycache__/")
"""Where engines write while running a build (waveforms, simulator builds, bytecode)."""


def _runtime_file(rel: str) -> bool:
    return rel.startswith(RUNTIME_FOLDERS) or "/__pycache__/" in rel or rel.endswith(".pyc")


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root`` except `UNHASHED` entries, by POSIX relative path."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in UNHASHED]
            filenames = [f for f in filenames if f not in UNHASHED]
        dirnames.sort()
        for f in sorted(filenames):
            out[(rel_dir / f).as_posix()] = _sha256(Path(dirpath) / f)
    return dict(sorted(out.items()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- writing a build directory --------------------------------------------------------------


def resolve_output(out: str | Path) -> Path:
    """The absolute, symlink-free path a build for ``--out out`` will be written to.

    Raises:
        BuildDirError: ``out`` is a file, a dangling symbolic link, a directory that is not
            empty and not an npuc build, a name too long for the file system, or inside a
            directory that cannot be created.
    """
    given = Path(out)
    if str(out) == "":
        raise BuildDirError("--out is empty: give a directory for the build")
    absolute = Path(os.path.abspath(given))
    name_max = _name_max(absolute.parent)
    for part in absolute.parts[1:]:
        if len(part.encode()) > name_max:
            raise BuildDirError(f"{str(given)[:60]}...: the name '{part[:40]}...' is {len(part.encode())} bytes "
                                f"long; this file system allows {name_max}")
    if given.is_symlink() and not given.exists():
        raise BuildDirError(f"{given} is a symbolic link to {os.readlink(given)}, which does not exist; "
                            "remove the link or give another --out")
    path = absolute.resolve()
    if path.exists() and not path.is_dir():
        raise BuildDirError(f"{given} exists and is not a directory; choose another --out")
    if path.is_dir() and read_manifest(path) is None and _nonempty(path):
        what = "its manifest.json was not written by npuc" if (path / MANIFEST).exists() else "it is not empty"
        raise BuildDirError(f"{given} is not an npuc build directory ({what}); refusing to overwrite it: "
                            "choose a new or empty --out")
    if path.parent == path:
        raise BuildDirError(f"{given}: the file system root cannot be a build directory")
    return path


def _name_max(directory: Path) -> int:
    while directory.parent != directory:
        try:
            if directory.is_dir():
                break
        except OSError:  # a component too long to stat
            pass
        directory = directory.parent
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _nonempty(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except OSError as e:
        raise BuildDirError(f"{path}: cannot read the directory ({e.strerror})") from None


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(Path(os.getcwd()).resolve())
        return "./" if str(rel) == "." else f"{rel}/"
    except ValueError:
        return f"{path}/"


@contextlib.contextmanager
def output_lock(path: Path, echo: Callable[[str], None] | None = None) -> Iterator[None]:
    """Serialize writers of one build directory (concurrent compiles into one ``--out``).

    The lock file lives in npuc's cache folder, keyed by the absolute path, so the user's
    folders get no lock files.
    """
    from filelock import FileLock, Timeout

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "npuc" / "locks"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.gettempdir()) / "npuc-locks"
        root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if echo:
            echo(f"waiting for another npuc process writing {path} ...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_build(out: str | Path, fill: Callable[[Path], dict[str, Any]], echo: Callable[[str], None] | None = None
                ) -> Path:
    """Write a build directory atomically: ``fill(tmp)`` writes every artifact into a temporary
    sibling and returns the manifest fields; the manifest (format marker, file hashes) is added
    and the directory takes the place of ``out`` only when everything succeeded.

    An existing build at ``out`` survives every failure (including signals). When ``out`` is the
    current directory or one of its parents, its contents are swapped instead of the directory
    itself, so the shell's working directory stays valid.

    Returns:
        The absolute path written.
    """
    path = resolve_output(out)
    with output_lock(path, echo):
        path = resolve_output(out)  # another writer may have changed it while we waited
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".npuc-build-", dir=path.parent))
        except OSError as e:
            raise BuildDirError(f"{out}: cannot create the build directory ({e.strerror or e})") from None
        try:
            fields = fill(tmp)
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields, "files": file_hashes(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            with _signals_deferred():
                _install(tmp, path)
        except OSError as e:
            raise BuildDirError(f"{out}: cannot write the build ({e.strerror or e}); "
                                "any earlier build there is unchanged") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _install(tmp: Path, path: Path) -> None:
    """Put the finished ``tmp`` in the place of ``path``; on failure ``path`` is as before."""
    if not path.exists():
        os.rename(tmp, path)
        return
    cwd = Path(os.getcwd()).resolve()
    old = Path(tempfile.mkdtemp(prefix=".npuc-old-", dir=path.parent))
    if cwd == path or path in cwd.parents:
        _swap_contents(tmp, path, old)
    else:
        os.rename(path, old / "build")
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old / "build", path)
            old.rmdir()
            raise
    shutil.rmtree(old, ignore_errors=True)


def _swap_contents(tmp: Path, path: Path, old: Path) -> None:
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for entry in sorted(os.listdir(path)):
            os.rename(path / entry, old / entry)
            moved_out.append(entry)
        for entry in sorted(os.listdir(tmp)):
            os.rename(tmp / entry, path / entry)
            moved_in.append(entry)
    except OSError:
        for entry in moved_in:
            os.rename(path / entry, tmp / entry)
        for entry in moved_out:
            os.rename(old / entry, path / entry)
        old.rmdir()
        raise


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while directories are renamed (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class BuildDir:
    """Accessors for a compile output directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise BuildDirError(f"{self.path}: no such directory (run 'npuc compile ... --out {self.path}' first)")
        self.bare = (self.path / GRAPH_FILE).is_file()
        if not self.bare and not (self.path / MANIFEST).is_file():
            raise BuildDirError(f"{self.path}: neither an npuc build directory ({MANIFEST}) nor a graph directory ({GRAPH_FILE})")
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self.bare:
            return {"targets": []}
        if self._manifest is None:
            try:
                doc = json.loads((self.path / MANIFEST).read_text())
            except (OSError, ValueError) as e:
                raise BuildDirError(f"{self.path / MANIFEST}: unreadable ({e})") from None
            legacy = isinstance(doc, dict) and "format" not in doc and "npuc" in doc and "targets" in doc
            if not isinstance(doc, dict) or (doc.get("format") != FORMAT and not legacy):
                raise BuildDirError(f"{self.path}: not an npuc build directory ({MANIFEST} was not written by npuc)")
            self._manifest = doc
        return self._manifest

    def check_unmodified(self) -> None:
        """Refuse a build whose generated files changed after compile (they are executed).

        Raises:
            BuildDirError: a file was edited, added to or removed from a hashed folder, or
                the build predates file hashes; the message names the files and
                ``--allow-modified``.
        """
        if self.bare:
            return
        recorded = self.manifest.get("files")
        if recorded is None:
            raise BuildDirError(f"{self.path} was built by npuc {self.manifest.get('npuc', '?')} without file "
                                "hashes, so npuc cannot tell whether its generated code was edited: recompile "
                                "it, or pass --allow-modified (allow_modified=True) to run it anyway")
        current = file_hashes(self.path)
        changed = sorted(f for f in recorded if current.get(f) != recorded[f])
        # files the hardware engines write into rtl/sim/ and caches are not part of the build
        added = sorted(f for f in current if f not in recorded and not _runtime_file(f))
        if changed or added:
            parts = []
            if changed:
                parts.append(f"{len(changed)} file(s) changed or missing since compile ({', '.join(changed[:3])}"
                             f"{', ...' if len(changed) > 3 else ''})")
            if added:
                parts.append(f"{len(added)} file(s) added ({', '.join(added[:3])}{', ...' if len(added) > 3 else ''})")
            raise BuildDirError(f"{self.path}: {'; '.join(parts)}. A build holds code the hardware engines "
                                "execute: recompile it, or pass --allow-modified (allow_modified=True) if you "
                                "made the change yourself")

    @property
    def targets(self) -> list[str]:
        return list(self.manifest.get("targets", []))

    def float_graph(self) -> Graph:
        return Graph.load(self.path if self.bare else self.path / "graph")

    def target_name(self, target: str | None) -> str:
        """Resolve ``--target`` (optional when exactly one target was compiled)."""
        if self.bare:
            raise BuildDirError(f"{self.path} is a bare graph directory; it has no compiled targets")
        targets = self.targets
        if not targets:
            raise BuildDirError(f"{self.path} was compiled without a target (no --target): only the float "
                                "engine can run it; recompile with --target loihi2 or --target fpga")
        if target is None:
            if len(targets) != 1:
                raise BuildDirError(f"{self.path} was compiled for {targets}: choose one with --target (target= in Python)")
            return targets[0]
        name = target.partition(":")[0]
        if name not in targets:
            raise BuildDirError(f"{self.path} has no target '{name}' (compiled: {targets})")
        spec = self.manifest.get("specs", {}).get(name, name)
        if ":" in target and target != spec:
            raise BuildDirError(f"{self.path} was compiled for '{spec}', not '{target}': target options "
                                "apply when compiling (npuc compile --target ...)")
        return name

    def target_for_kind(self, kind: str) -> str:
        """The compiled target of a kind (``loihi2`` or ``fpga``), e.g. for an engine."""
        from .targets import load_target

        matches = [t for t in self.targets if load_target(self.manifest.get("specs", {}).get(t, t)).kind == kind]
        if not matches:
            raise BuildDirError(f"{self.path} has no {kind} target (compiled: {self.targets}); "
                                f"compile with --target {kind}")
        if len(matches) > 1:
            raise BuildDirError(f"{self.path} has several {kind} targets {matches}: choose one with --target (target= in Python)")
        return matches[0]

    def int_graph(self, target: str | None = None) -> Graph:
        if self.bare:
            g = Graph.load(self.path)
            if g.profile is None:
                raise BuildDirError(f"{self.path}: graph is not quantized (no numeric profile)")
            return g
        return Graph.load(self.path / self.target_name(target))

    def sub(self, name: str) -> Path:
        return self.path / name
