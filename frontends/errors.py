"""Errors raised while importing a model (defined in `npuc.errors`, re-exported here)."""

from ..errors import FrontendError, LayoutError, UnsupportedModuleError

__all__ = ["FrontendError", "LayoutError", "UnsupportedModuleError"]
