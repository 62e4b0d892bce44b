"""RTL build caches are keyed by the environment that built them: a cocotb simulator links its
venv's cocotb libraries, so a build left by another or a deleted venv must not be reused (it
exited 127 when a clone that filled the shared cache was removed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from npuc.backends.rtl import toolchain


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """Build directories `build` / `build_harness` would fill (nothing is built)."""
    dirs: list[Path] = []
    monkeypatch.setenv("NPUC_RTL_CACHE", str(tmp_path))
    monkeypatch.setattr(toolchain, "_cached_build", lambda build_dir, fill: dirs.append(build_dir))
    return dirs


@pytest.mark.rtl  # engine_guard counts any call of the build functions as a Verilator start
def test_build_keys_change_with_the_environment(recorded, monkeypatch, tmp_path):
    src = tmp_path / "top.v"
    src.write_text("module top; endmodule\n")
    harness = tmp_path / "harness.cpp"
    harness.write_text("int main() { return 0; }\n")
    for tools in ("env-a", "env-a", "env-b"):
        monkeypatch.setattr(toolchain, "toolchain_id", lambda t=tools: t)
        toolchain.build([src], "top", {})
        toolchain.build_harness([src], "top", harness, {})
    cocotb_dirs, harness_dirs = recorded[0::2], recorded[1::2]
    for dirs in (cocotb_dirs, harness_dirs):
        assert dirs[0] == dirs[1] and dirs[0] != dirs[2]


def test_toolchain_id_names_this_environment():
    assert toolchain.toolchain_id() == toolchain.toolchain_id() and len(toolchain.toolchain_id()) == 8
