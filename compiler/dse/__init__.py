"""Design-space exploration (``npuc explore``, package `npuc.dse`) and large-data evaluation (``npuc evaluate``).

One concern per module: `space` (knobs and points), `search` (grid, random, NSGA-II),
`point` (one point on a worker: compile, accuracy, cost), `costs` (FPGA and Loihi 2 cost
columns), `measure` (chunked golden-engine runs), `runner` (local processes or Dask),
`bundle` (builds as bytes), `cache` (per-point cache, resume), `pareto`, `plots`,
`outputs` (files and the front table), `run` (the explore driver), `evaluate`, `cli`.
"""

from .evaluate import Evaluation, evaluate
from .run import ExploreResult, explore

__all__ = ["explore", "evaluate", "ExploreResult", "Evaluation"]
