"""Compiler passes: Graph -> Graph transformations (see `npuc.passes.base`).

Importing this package registers every built-in pass by its kebab-case name
(``fold-batchnorm``, ``fold-scale``, ``legalize``, ``quantize``, ``map-cores``,
``place-cores``); `npuc.passes.base.parse_pipeline` builds passes from text.
"""

from .base import (
           PASSES,
           Pass,
           PassContext,
           PassError,
           PassResult,
           make_pass,
           parse_pipeline,
           pipeline_text,
           run_pipeline,
)

__all__ = ["PASSES", "Pass", "PassContext", "PassError", "PassResult", "make_pass", "parse_pipeline",
           "pipeline_text", "run_pipeline"]
