"""Build directories as bytes, so builds travel to and from workers without a shared filesystem.

A bundle is a deterministic gzip'd tar of the directory (sorted names, zeroed times and
owners); `unpack` refuses members that would land outside the destination.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..errors import BuildDirError

_CACHE: dict[str, Path] = {}
"""Per process: bundle digest -> unpacked directory (a worker unpacks a shared build once)."""


def pack(directory: str | Path) -> bytes:
    """The build directory as deterministic ``.tar.gz`` bytes."""
    root = Path(directory)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(root.rglob("*")):
            if path.is_dir() or path.name.endswith(".lock"):
                continue
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def unpack(data: bytes, dest: str | Path) -> Path:
    """Unpack bundle bytes into ``dest`` (created; must not exist or be empty)."""
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            target = (out / m.name).resolve()
            if not m.isfile() or not target.is_relative_to(out.resolve()):
                raise BuildDirError(f"build bundle member {m.name!r} is not a plain file inside the build")
        tar.extractall(out)  # noqa: S202  (members checked above)
    return out


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def unpacked(data: bytes) -> Path:
    """A per-process unpacked copy of a bundle (reused for every chunk a worker evaluates)."""
    key = digest(data)
    if key not in _CACHE or not _CACHE[key].is_dir():
        _CACHE[key] = unpack(data, Path(tempfile.mkdtemp(prefix="npuc-bundle-")) / "build")
    return _CACHE[key]


def install(data: bytes, dest: str | Path) -> Path:
    """Write a bundle as a normal build directory at ``dest`` (replacing an earlier npuc build there)."""
    from ..builddir import BuildDir, write_build

    tmp = Path(tempfile.mkdtemp(prefix="npuc-bundle-"))
    try:
        src = unpack(data, tmp / "build")
        manifest = BuildDir(src).manifest

        def fill(out: Path) -> dict:
            for entry in src.iterdir():
                if entry.name != "manifest.json":
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, out / entry.name)
            return {k: v for k, v in manifest.items() if k not in ("format", "format_version", "files")}

        return write_build(dest, fill)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
