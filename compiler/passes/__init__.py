"""Compiler passes: Graph -> Graph transformations (see npuc.passes.base)."""
