"""Errors raised while importing a model (printed by the CLI as one line)."""

from __future__ import annotations


class FrontendError(ValueError):
    """A model, checkpoint or construct npuc cannot import, naming the file,
    module (qualified name and type) or source line and what to do about it."""


class UnsupportedModuleError(FrontendError):
    """A module type with no converter for its role."""


class LayoutError(FrontendError):
    """A tensor's batch/time axes do not fit how an operation uses them."""
