"""Which points to evaluate: the full grid, a seeded random sample, or Optuna's NSGA-II.

A strategy proposes points in batches (`batches`) and hears back each batch's
objective values (`tell`) before proposing the next, so a batch runs in parallel
and the sequence of points depends only on the seed and the results, never on
which worker finished first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import SpaceError
from .space import Space

STRATEGIES = ("grid", "random", "nsga")


class Strategy:
    """Base: one batch holding every point (grid, random)."""

    def __init__(self, space: Space, points: list[dict[str, str]]) -> None:
        self.space = space
        self.points = points

    def batches(self) -> Iterator[list[dict[str, str]]]:
        yield self.points

    def tell(self, results: list[tuple[dict[str, str], list[float] | None]]) -> None:
        """Objective values (all minimized) per point of the last batch; None: refused point."""


class Nsga(Strategy):
    """Optuna's NSGA-II over the categorical knobs, one generation per batch."""

    def __init__(self, space: Space, budget: int, seed: int, objectives: int, population: int | None = None) -> None:
        import optuna

        super().__init__(space, [])
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.budget = budget
        self.population = max(2, min(population or 8, budget))
        sampler = optuna.samplers.NSGAIISampler(population_size=self.population, seed=seed)
        self.study = optuna.create_study(directions=["minimize"] * objectives, sampler=sampler)
        self._trials: list[Any] = []
        self._seen: set[tuple[str, ...]] = set()

    def batches(self) -> Iterator[list[dict[str, str]]]:
        done = 0
        while done < self.budget:
            batch, self._trials = [], []
            tries = 0
            while len(batch) < min(self.population, self.budget - done) and tries < 50 * self.population:
                tries += 1
                trial = self.study.ask()
                point = {k: trial.suggest_categorical(k, list(v)) for k, v in self.space.knobs.items()}
                key = tuple(point.values())
                if key in self._seen:  # already measured: tell optuna nothing new, ask again
                    self.study.tell(trial, state=_pruned())
                    continue
                self._seen.add(key)
                batch.append(point)
                self._trials.append(trial)
            if not batch:  # the sampler keeps proposing measured points: the space is exhausted
                return
            done += len(batch)
            yield batch

    def tell(self, results: list[tuple[dict[str, str], list[float] | None]]) -> None:
        import optuna

        for trial, (_, values) in zip(self._trials, results):
            if values is None or any(v is None or not np.isfinite(v) for v in values):
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, values)


def _pruned() -> Any:
    import optuna

    return optuna.trial.TrialState.PRUNED


def make_strategy(name: str, space: Space, budget: int | None, seed: int, objectives: int) -> Strategy:
    """``grid`` (every point; ``budget`` caps it), ``random`` (``budget`` distinct points, seeded)
    or ``nsga`` (``budget`` points over generations of NSGA-II).

    Raises:
        SpaceError: unknown strategy, a budget below 1, or a search that needs a budget.
    """
    if name not in STRATEGIES:
        raise SpaceError(f"--search {name!r}: choose from {', '.join(STRATEGIES)}")
    if budget is not None and budget < 1:
        raise SpaceError(f"--budget must be at least 1, got {budget}")
    grid = space.grid()
    if name == "grid":
        return Strategy(space, grid[:budget] if budget else grid)
    if budget is None:
        raise SpaceError(f"--search {name} needs --budget N (the number of points to evaluate)")
    if name == "random":
        rng = np.random.default_rng(seed)
        pick = sorted(rng.choice(len(grid), size=min(budget, len(grid)), replace=False))
        return Strategy(space, [grid[i] for i in pick])
    return Nsga(space, min(budget, len(grid)), seed, objectives)
