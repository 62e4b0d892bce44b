"""A corpus of bad inputs for the CLI and the API.

Each case runs one command in a workspace that holds a prior build and the
user's own files, and checks: the exit code, the first line of the message,
no traceback, nothing outside ``--out`` changed, and the prior build still
works (its file hashes verify). Cases come from adversarial runs (issue 12)
and the errors handled before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

import npuc
from npuc.builddir import BuildDir
from npuc.cli import main
from npuc.errors import InputError, NpucError

MODEL = textwrap.dedent('''
    import sys
    import torch
    import torch.nn as nn
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self, factor=1.0):
            super().__init__()
            self.fc = nn.Linear(6, 5)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True, graded_spikes_factor=factor)
            self.fc2 = nn.Linear(5, 3)
            self.out = snn.Leaky(beta=0.8, init_hidden=True)

        def forward(self, x):
            return self.out(self.fc2(self.lif(self.fc(x))))

    def net():
        torch.manual_seed(0)
        return Net()

    def huge_graded():
        torch.manual_seed(0)
        return Net(factor=1e38)

    def leaves():
        sys.exit(3)
''')


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: the model file, inputs, a prior build, and a user's web app."""
    d = tmp_path_factory.mktemp("ws")
    (d / "models.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    np.save(d / "x.npy", rng.random((4, 6)).astype(np.float32))
    np.save(d / "labels_big.npy", np.array([0, 1, 2, 7]))
    np.save(d / "labels.npy", np.array([0, 1, 2, 1]))
    assert main(["compile", f"{d}/models.py:net", "--example-input", f"{d}/x.npy", "--steps", "5",
                 "--target", "fpga", "--target", "loihi2", "--allow-approx", "--out", f"{d}/prior"]) == 0
    (d / "webapp" / "src").mkdir(parents=True)
    (d / "webapp" / "manifest.json").write_text('{"name": "my app", "start_url": "/"}')
    (d / "webapp" / "index.html").write_text("<html></html>")
    (d / "webapp" / "src" / "app.js").write_text("console.log(1)")
    (d / "notobject.json").write_text("[1, 2]")
    (d / "noname.json").write_text(json.dumps({"kind": "fpga", "profile": {"name": "x"}}))
    os.symlink(d / "prior", d / "link_to_prior")
    os.symlink(d / "nowhere", d / "dangling")
    torch.save({"fc.weight": torch.full((5, 6), float("nan"))}, d / "nan.pt")
    (d / "corrupt.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    (d / "corrupt.nir").write_bytes(b"\x89HDF\r\n not really")
    (d / "corrupt.onnx").write_bytes(b"\x08\x07 garbage")
    return d


@dataclass
class Case:
    argv: list[str]
    rc: int
    first_line: str  # regex searched in the first line of stderr
    out: str | None = None  # the case's --out (may change when rc == 0)
    cwd: str | None = None  # run from this workspace folder
    env: dict[str, str] = field(default_factory=dict)


C = "compile {d}/models.py:net --example-input {d}/x.npy --steps 5"
CASES = {
    # data loss
    "out_is_a_users_directory": Case(f"{C} --target fpga --out {{d}}/webapp".split(), 2,
                                     r"webapp is not an npuc build directory \(its manifest.json was not written by npuc\)"),
    "out_dot_inside_build_fails": Case("compile {d}/models.py:net --example-input {d}/x.npy --checkpoint {d}/corrupt.pt "
                                       "--steps 5 --target fpga --out .".split(), 2, r"checkpoint", cwd="prior"),
    "out_dangling_symlink": Case(f"{C} --out {{d}}/dangling".split(), 2, r"symbolic link to .*nowhere, which does not exist"),
    "out_name_too_long": Case(f"{C} --out {{d}}/{'a' * 300}".split(), 2, r"is 300 bytes long"),
    "out_is_a_file": Case(f"{C} --out {{d}}/x.npy".split(), 2, r"exists and is not a directory"),
    # unbounded work
    "steps_unbounded": Case("compile {d}/models.py:net --example-input {d}/x.npy --steps 10000000 --target fpga "
                            "--out {d}/b".split(), 2, r"10,000,000 time steps exceed npuc's limit of 100,000"),
    "lanes_beyond_design": Case(f"{C} --target fpga:lanes=100000 --out {{d}}/b".split(), 2,
                                r"lanes=100000 exceeds the widest layer \('lif', 5 neurons\)"),
    # one-line errors
    "graded_factor_overflows_float32": Case("compile {d}/models.py:huge_graded --example-input {d}/x.npy --steps 5 "
                                            "--target fpga --out {d}/b".split(), 2, r"."),
    "target_json_not_object": Case(f"{C} --target {{d}}/notobject.json --out {{d}}/b".split(), 2, r"is a JSON object"),
    "target_json_without_name": Case(f"{C} --target {{d}}/noname.json --out {{d}}/b".split(), 2, r"field 'name'"),
    "spike_types_unknown": Case(f"{C} --target fpga:spike_types=binary+bogus --out {{d}}/b".split(), 2,
                                r"spike_types.*'bogus'"),
    "loihi2_has_no_lanes": Case(f"{C} --target loihi2:lanes=4 --out {{d}}/b".split(), 2,
                                r"target 'loihi2' \(kind loihi2\) has no option 'lanes'"),
    "model_calls_sys_exit": Case("compile {d}/models.py:leaves --example-input {d}/x.npy --out {d}/b".split(), 2,
                                 r"leaves\(\) called sys.exit\(3\)"),
    "labels_above_class_count": Case(f"{C} --target fpga --labels {{d}}/labels_big.npy --out {{d}}/b".split(), 2,
                                     r"label 7 is not a class index of the model's 3 outputs"),
    "unknown_pipeline_pass": Case(f"{C} --target fpga --pipeline fold,legalize --out {{d}}/b".split(), 2,
                                  r"unknown pass 'fold'"),
    "bad_pipeline_option": Case(f"{C} --target loihi2 --pipeline loihi2=fold-batchnorm,legalize,quantize{{percent=1}} "
                                "--out {d}/b".split(), 2, r"pass 'quantize' has no option 'percent'"),
    # handled before; kept in the corpus
    "nan_weights": Case(f"{C} --checkpoint {{d}}/nan.pt --target fpga --out {{d}}/b".split(), 2, r"."),
    "corrupt_checkpoint": Case(f"{C} --checkpoint {{d}}/corrupt.pt --target fpga --out {{d}}/b".split(), 2, r"corrupt.pt"),
    "corrupt_nir": Case("compile {d}/corrupt.nir --target fpga --out {d}/b".split(), 2, r"corrupt.nir"),
    "corrupt_onnx": Case("compile {d}/corrupt.onnx --target fpga --out {d}/b".split(), 2, r"corrupt.onnx"),
    "nan_input": Case("simulate {d}/prior --engine int --target fpga --input {d}/nan_x.npy".split(), 2,
                      r"NaN or infinite"),
    # successful compiles that must not touch anything else
    "out_symlink_to_build": Case(f"{C} --target fpga --out {{d}}/link_to_prior".split(), 0, r"imported", out="prior"),
    "out_dot_inside_build": Case("compile {d}/models.py:net --example-input {d}/x.npy --steps 5 --target fpga "
                                 "--target loihi2 --allow-approx --out .".split(), 0, r"imported", out="prior",
                                 cwd="prior"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_corpus(ws, name, capsys, monkeypatch):
    case = CASES[name]
    d = ws
    nan_x = np.load(d / "x.npy")
    nan_x[0, 0] = np.nan
    np.save(d / "nan_x.npy", nan_x)
    before = _snapshot(d, d / case.out if case.out else None)
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    monkeypatch.chdir(d / case.cwd if case.cwd else d)
    rc = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("npuc: error:")]
    assert rc == case.rc, err
    assert "Traceback" not in err
    if case.rc:
        assert len(errors) == 1 and len(errors[0].splitlines()) == 1, err
        assert re.search(case.first_line, errors[0]), errors[0]
    else:
        assert not errors and re.search(case.first_line, err.splitlines()[0]), err
    assert _snapshot(d, d / case.out if case.out else None) == before
    assert not [p for p in d.iterdir() if p.name.startswith(".npuc-")]
    BuildDir(d / "prior").check_unmodified()  # the prior build survived, unedited


def test_old_build_survives_a_failed_compile_into_cwd(ws, monkeypatch, capsys):
    """``cd build && npuc compile ... --out .`` that fails leaves every file in place (34 -> 0 before)."""
    files = _snapshot(ws / "prior")
    monkeypatch.chdir(ws / "prior")
    assert main(["compile", f"{ws}/models.py:leaves", "--example-input", f"{ws}/x.npy", "--out", "."]) == 2
    assert _snapshot(ws / "prior") == files
    capsys.readouterr()


@pytest.mark.slow  # three compiles in child processes
def test_concurrent_compiles_into_one_out_all_succeed(ws, tmp_path):
    """Three identical compiles at once into one existing ``--out``: serialized by a lock, all exit 0,
    and the result is one complete build."""
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "npuc.cli", "compile", f"{ws}/models.py:net", "--example-input", f"{ws}/x.npy",
           "--steps", "5", "--target", "fpga", "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [r[1] for r in results]
    BuildDir(out).check_unmodified()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]


def _copy_build(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.mark.lava
def test_lava_module_outside_the_build_is_never_imported(ws, tmp_path, capsys):
    b = _copy_build(ws / "prior", tmp_path / "b")
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')\n")
    doc = json.loads((b / "lava" / "network.json").read_text())
    doc["module"] = str(evil)
    (b / "lava" / "network.json").write_text(json.dumps(doc))
    for flags in ([], ["--allow-modified"]):
        rc = main(["verify", str(b), "--engine", "lava", "--input", f"{ws}/x.npy", *flags])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        assert ("changed or missing since compile" if not flags else "must name a .py file inside") in err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.lava
def test_edited_build_is_refused_unless_allowed(ws, tmp_path, capsys):
    b = _copy_build(ws / "prior", tmp_path / "b")
    module = next((b / "lava").glob("*_lava.py"))
    module.write_text(module.read_text() + "\n# edited by hand\n")
    assert main(["verify", str(b), "--engine", "lava", "--input", f"{ws}/x.npy"]) == 2
    assert "lava/" in capsys.readouterr().err
    assert main(["verify", str(b), "--engine", "lava", "--input", f"{ws}/x.npy", "--allow-modified"]) == 0
    capsys.readouterr()


@pytest.mark.lava
def test_truncated_lava_weights_are_one_line(ws, tmp_path, capsys):
    b = _copy_build(ws / "prior", tmp_path / "b")
    npz = next((b / "lava").glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:100])
    assert main(["verify", str(b), "--engine", "lava", "--input", f"{ws}/x.npy", "--allow-modified"]) == 2
    err = capsys.readouterr().err
    assert "unreadable" in err and "Traceback" not in err


def test_non_hex_memory_is_one_line(ws, tmp_path, capsys):
    """Checked before Verilator runs (so no simulator starts)."""
    b = _copy_build(ws / "prior", tmp_path / "b")
    hexfile = sorted((b / "rtl" / "mem").glob("*.hex"))[0]
    hexfile.write_text("zz\n" + hexfile.read_text())
    assert main(["verify", str(b), "--engine", "rtl", "--input", f"{ws}/x.npy", "--allow-modified"]) == 2
    err = capsys.readouterr().err
    assert "line 1: b'zz' is not a hex word" in err and "Traceback" not in err


def _model(ws: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("npuc_corpus_models", ws / "models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.net()


def test_api_errors(ws):
    m = _model(ws)
    x = np.load(ws / "x.npy")
    with pytest.raises(InputError, match="example_input is None"):
        npuc.compile(m, None, steps=5)
    with pytest.raises(InputError, match="labels must be a 1-D array"):
        npuc.compile(m, x, target="fpga", steps=5, labels=[[1, 2]])
    with pytest.raises(InputError, match="4 labels? for|labels for 4"):
        npuc.compile(m, x, target="fpga", steps=5, labels=[0, 1])
    with pytest.raises(InputError, match="label 9 is not a class index"):
        npuc.compile(m, x, target="fpga", steps=5, labels=[0, 1, 2, 9])
    with pytest.raises(NpucError, match="NaN"):
        npuc.compile(m, np.full_like(x, np.nan), steps=5)


def test_api_temporary_build_is_removed(ws, tmp_path):
    m = _model(ws)
    hw = npuc.compile(m, np.load(ws / "x.npy"), target="fpga", steps=5)
    folder = hw.path.parent
    assert folder.is_dir()
    kept = hw.save(tmp_path / "kept_build")
    assert npuc.load(kept.path).targets == ["fpga"]
    del hw
    import gc

    gc.collect()
    assert not folder.exists()
