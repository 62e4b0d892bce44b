"""The layering rules of docs/architecture.md, checked on the source (imports) and on the error classes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import npuc.errors as errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"compiler": "npuc", "frontends": "npuc.frontends", "ir": "npuc.ir", "backends": "npuc.backends",
                "sim": "npuc.sim", "hdl": "npuc.hdl"}


def _modules():
    for folder, pkg in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([pkg, *parts]), path.name == "__init__.py"


def _imports(path: Path, module: str, is_pkg: bool) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - node.level + 1]
                name = ".".join(root + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


MODULES = list(_modules())


@pytest.mark.parametrize("path,module,is_pkg", MODULES, ids=[m for _, m, _ in MODULES])
def test_only_the_entry_point_imports_the_cli(path, module, is_pkg):
    if module == "npuc.cli":
        return
    bad = {i for i in _imports(path, module, is_pkg) if i == "npuc.cli" or i.startswith("npuc.cli.")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: user errors live in npuc.errors, " \
                    "input files in npuc.inputs"


@pytest.mark.parametrize("path,module,is_pkg", [m for m in MODULES if m[1].startswith("npuc.backends")],
                         ids=[m for _, m, _ in MODULES if m.startswith("npuc.backends")])
def test_backends_do_not_import_upward(path, module, is_pkg):
    """Backends read the IR; the driver, pipeline, API and package root call them, not the reverse."""
    upward = {"npuc", "npuc.__version__", "npuc.driver", "npuc.pipeline", "npuc.api", "npuc.cli", "npuc.report",
              "npuc.verify", "npuc.builddir"}
    bad = _imports(path, module, is_pkg) & upward
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_error_class_derives_from_npuc_error():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception) and not issubclass(c, Warning)]
    assert len(classes) >= 15
    assert all(issubclass(c, errors.NpucError) for c in classes)


def test_every_error_raised_for_users_is_an_npuc_error():
    """Exception classes defined anywhere in the package are npuc.errors classes (or re-exports)."""
    defined = []
    for path, module, _ in MODULES:
        if module == "npuc.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                defined.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    internal = {"UnboundedError"}  # rtl bounds: caught and re-raised as RtlSupportError
    assert [d for d in defined if d.split()[-1] not in internal] == []


def test_the_ir_lists_no_library_forms_and_loads_them_on_demand():
    """Library float forms are registered by the float engine's form module, not listed in the IR;
    a graph built (or loaded) before that module is imported still validates its form."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from npuc.ir.ops import neuron\n"
        "assert set(neuron.FLOAT_FORMS) == {'npuc'}, neuron.FLOAT_FORMS\n"
        "assert 'npuc.sim' not in sys.modules\n"
        "neuron.LIF(form='norse_li', form_args=dict(c_mem=0.1, c_syn=0.2, v_leak=0.0))\n"
        "assert 'npuc.sim.float_forms' in sys.modules\n"
        "try:\n"
        "    neuron.LIF(form='norse_li', form_args=dict(c_mem=0.1))\n"
        "except ValueError as e:\n"
        "    assert 'c_syn' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('missing form_args accepted')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
