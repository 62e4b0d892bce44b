"""Import a model factory like user code and load a checkpoint into it safely.

* ``path/file.py:factory`` imports the file as a module (its directory first on
  ``sys.path``, so sibling imports work); ``package.module:factory`` imports the
  module. ``factory`` is a callable returning an ``nn.Module`` or an
  ``nn.Module`` attribute.
* Checkpoints are read with ``torch.load(weights_only=True)``; only
  ``trust_checkpoint=True`` (``--trust-checkpoint``) allows arbitrary pickles.
* A state dict is unwrapped from ``{'net'|'model'|'state_dict'|'model_state_dict': ...}``,
  ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes are
  stripped, and neuron *state* buffers that libraries put in ``state_dict``
  (sinabs ``v_mem``/``i_syn``, snntorch ``mem``/``syn``/``spk``) are dropped.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import FrontendError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "net", "model")
PREFIXES = ("module.", "_orig_mod.")
STATE_BUFFERS = ("v_mem", "i_syn", "mem", "syn", "spk")
"""Buffer names that hold neuron state, not weights (dropped from checkpoints)."""


def import_factory(spec: str) -> nn.Module:
    """Build the model named by ``file.py:factory`` or ``package.module:factory``."""
    if ":" not in spec:
        raise FrontendError(
            f"model '{spec}': expected path/file.py:factory, package.module:factory, a .nir or an .onnx file"
        )
    where, _, attr = spec.rpartition(":")
    if not attr.isidentifier():
        raise FrontendError(f"model '{spec}': '{attr}' is not a Python name")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise FrontendError(f"model '{spec}': cannot import module '{where}': {e}") from None
        except SystemExit as e:
            raise FrontendError(f"model '{spec}': importing '{where}' called sys.exit({e.code!r})") from None
        except Exception as e:  # the user's module raised while being imported
            raise FrontendError(f"model '{spec}': importing '{where}' raised {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise FrontendError(f"model '{spec}': module '{where}' has no attribute '{attr}' (it has: {', '.join(names[:20])})")
    obj = getattr(module, attr)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise FrontendError(f"model '{spec}': '{attr}' is a class that is not an nn.Module")
    if not callable(obj):
        raise FrontendError(f"model '{spec}': '{attr}' is neither an nn.Module nor a callable returning one")
    try:
        model = obj()
    except TypeError as e:
        raise FrontendError(f"model '{spec}': calling {attr}() failed: {e} (the factory must take no arguments)") from None
    except SystemExit as e:
        raise FrontendError(f"model '{spec}': {attr}() called sys.exit({e.code!r})") from None
    except Exception as e:  # the user's factory raised
        raise FrontendError(f"model '{spec}': {attr}() raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise FrontendError(f"model '{spec}': {attr}() returned {type(model).__name__}, not an nn.Module")
    return model


def _import_file(path: Path):
    if not path.is_file():
        raise FrontendError(f"model file '{path}' not found")
    name = "npuc_user_" + re.sub(r"\W", "_", path.stem)
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FrontendError(f"model file '{path}': cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise FrontendError(f"model file '{path}', line {e.lineno}: {e.msg}") from None
    except ImportError as e:
        del sys.modules[name]
        raise FrontendError(f"model file '{path}': {e}") from None
    except SystemExit as e:
        del sys.modules[name]
        raise FrontendError(f"model file '{path}': importing it called sys.exit({e.code!r}) (guard scripts with "
                            "if __name__ == '__main__':)") from None
    except Exception as e:  # the user's module raised while being imported
        del sys.modules[name]
        raise FrontendError(f"model file '{path}': importing it raised {type(e).__name__}: {e}") from None
    return module


def read_checkpoint(path: str, trust: bool = False) -> Any:
    """``torch.load`` a checkpoint on the CPU, with ``weights_only=True`` unless ``trust``.

    Raises:
        FrontendError: missing or corrupt file, or a pickle that needs classes
            outside PyTorch's safe set (naming them and ``--trust-checkpoint``).
    """
    p = Path(path)
    if not p.is_file():
        raise FrontendError(f"checkpoint '{p}' not found")
    if p.stat().st_size == 0:
        raise FrontendError(f"checkpoint '{p}' is an empty file")
    try:
        return torch.load(p, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        msg = str(e)
        names = _unsafe_globals(p) or re.findall(r"GLOBAL ([\w.]+)", msg)
        if names:
            raise FrontendError(
                f"checkpoint '{p}' needs classes outside PyTorch's safe set ({', '.join(names)}); "
                "loading it would run code from the file. Save only the state_dict "
                "(torch.save(model.state_dict(), ...)), or pass --trust-checkpoint if you trust its source"
            ) from None
        raise FrontendError(f"checkpoint '{p}' is corrupt or not a PyTorch checkpoint ({_first_line(msg)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, ModuleNotFoundError) as e:
        raise FrontendError(f"checkpoint '{p}' is corrupt or not a PyTorch checkpoint ({_first_line(str(e))})") from None


def _unsafe_globals(p: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(p)))
    except Exception:  # noqa: BLE001 - best effort: fall back to parsing the error text
        return []


def _first_line(msg: str) -> str:
    for line in msg.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if line and not line.startswith(("Weights only load failed", "Please file an issue", "Check the documentation")) \
                and not re.fullmatch(r"[A-Za-z ]+error:", line):
            return line[:200]
    return re.sub(r"\x1b\[[0-9;]*m", "", msg.splitlines()[0] if msg else "unknown error")[:200]


def state_dict_of(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint object."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        raise FrontendError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a state_dict")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            return inner.state_dict()
        if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
            if any(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise FrontendError(
            f"checkpoint '{path}' has no tensors at the top level nor under {list(WRAPPER_KEYS)} "
            f"(keys: {sorted(map(str, obj))[:10]})"
        )
    return obj


def clean_state_dict(sd: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and drop neuron state buffers."""
    out = {}
    for k, v in sd.items():
        key = str(k)
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p):], True
        if key.rsplit(".", 1)[-1] in STATE_BUFFERS:
            continue
        out[key] = v
    return out


def load_checkpoint(model: nn.Module, path: str, trust: bool = False) -> None:
    """Load a checkpoint's weights into ``model`` (strict: every key must match).

    Raises:
        FrontendError: naming missing and unexpected keys, or shape mismatches.
    """
    sd = clean_state_dict(state_dict_of(read_checkpoint(path, trust), path))
    own = model.state_dict()
    expected = {k for k in own if k.rsplit(".", 1)[-1] not in STATE_BUFFERS}
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_names(unexpected)}")
        raise FrontendError(f"checkpoint '{path}' does not fit the model: " + "; ".join(parts))
    bad = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(sd)
        if isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if bad:
        raise FrontendError(f"checkpoint '{path}' does not fit the model: shape mismatch for {_names(bad)}")
    try:
        model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise FrontendError(f"checkpoint '{path}': {_first_line(str(e))}") from None


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
