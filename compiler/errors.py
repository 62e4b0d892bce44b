"""Every error a user can fix, in one place.

The CLI prints any `NpucError` as one line (``npuc: error: ...``) and exits 2;
anything else is a bug and shows a traceback. Each class names the layer it
comes from; messages name the file, layer or field and what to do about it.
Most classes also derive from `ValueError` (or `RuntimeError`) so that callers
written against the builtin types keep working.

Modules raise these directly or re-export them where their users expect them
(e.g. ``npuc.ir.graph.GraphError``, ``npuc.frontends.errors.FrontendError``).
"""

from __future__ import annotations


class NpucError(Exception):
    """Base of every user-facing npuc error (printed as one line by the CLI)."""


# -- inputs, files, build directories -----------------------------------------------------


class UserError(NpucError):
    """A command or API call that cannot proceed as asked (arguments, paths, combinations)."""


class InputError(NpucError, ValueError):
    """User data (inputs, labels) that does not fit the graph or is not usable data."""


class BuildDirError(UserError, ValueError):
    """A directory that is not a usable npuc build or graph directory, or cannot become one."""


# -- IR ---------------------------------------------------------------------------------


class GraphError(NpucError, ValueError):
    """An invalid graph, naming the node and what is wrong with it."""


class GraphFileError(NpucError, ValueError):
    """A graph directory that cannot be read, naming the file and the field."""


class StructureError(NpucError, ValueError):
    """A graph shape that has no hardware mapping, naming the nodes involved."""


# -- frontends ------------------------------------------------------------------------------


class FrontendError(NpucError, ValueError):
    """A model, checkpoint or construct npuc cannot import, naming the file,
    module (qualified name and type) or source line and what to do about it."""


class UnsupportedModuleError(FrontendError):
    """A module type with no converter for its role."""


class LayoutError(FrontendError):
    """A tensor's batch/time axes do not fit how an operation uses them."""


# -- targets and passes --------------------------------------------------------------------


class TargetError(NpucError, ValueError):
    """A target spec, target file or target option that cannot be resolved."""


class SpaceError(UserError, ValueError):
    """A design space (``npuc explore --space``) naming an unknown knob, an empty range or a bad value."""


class PassError(NpucError, ValueError):
    """A pass cannot transform the graph (names the node and the limit)."""


# -- backends and toolchains ----------------------------------------------------------------


class BackendError(NpucError, ValueError):
    """A graph feature a backend cannot emit, naming the node and the feature."""


class RtlSupportError(BackendError):
    """A graph feature the RTL backend does not implement, naming the node and the feature."""


class LavaMappingError(BackendError, GraphError):
    """A graph (node, op or parameter) with no exact Loihi 2 / Lava mapping; the message
    names the node, its op and what would make it mappable."""


class ArtifactError(BuildDirError):
    """A backend artifact folder (``rtl/``, ``lava/``) that is missing files, was edited,
    or was written by another format version."""


class LavaArtifactError(ArtifactError):
    """A ``lava/`` folder that cannot be used."""


class ToolchainError(NpucError, RuntimeError):
    """Verilator, the C++ build, Yosys or nextpnr failed; the message carries the tool's errors."""


class NpucWarning(UserWarning):
    """Base of npuc's warnings (printed as one ``warning:`` line by the CLI)."""
