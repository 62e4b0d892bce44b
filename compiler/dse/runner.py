"""Where points and data-set chunks run: local worker processes or a Dask cluster.

``scheduler`` selects the executor:

* ``None`` / ``"processes"``: a `concurrent.futures.ProcessPoolExecutor` with one worker per
  core (``workers`` to change it); shared objects reach each worker once, via its initializer;
  ``workers=0`` runs every task in this process, one after another (debugging, small tests);
* ``"local:N"``: a `distributed.LocalCluster` of N single-threaded worker processes;
* ``"tcp://HOST:PORT"`` (or ``tls://``): an existing Dask scheduler; workers need npuc.

Everything a task needs travels by value (pickled arrays, graphs, build bundles): no
shared filesystem is assumed. Shared objects are scattered to every worker once
(`Runner.share`) and passed to tasks as handles.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import as_completed as _local_completed
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

_SHARED: dict[str, Any] = {}


@dataclass(frozen=True)
class Ref:
    """A handle to an object shared with every local worker process."""

    name: str


def _init_worker(shared: dict[str, Any]) -> None:
    _SHARED.update(shared)
    _single_thread()


def _single_thread() -> None:
    """One worker per core: keep torch from starting its own thread pool in each of them."""
    import torch

    torch.set_num_threads(1)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*(_SHARED[a.name] if isinstance(a, Ref) else a for a in args))


def _dask_call(fn: Callable[..., Any], *args: Any) -> Any:
    _single_thread()
    return fn(*args)


class Runner:
    """Submit tasks to local processes or a Dask cluster; use as a context manager."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        self.scheduler = scheduler or "processes"
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        if self.workers < 0:
            raise UserError(f"--workers must be 0 (this process) or more, got {workers}")
        self._pool: ProcessPoolExecutor | None = None
        self._client = None
        self._cluster = None
        self._pending: dict[str, Any] = {}
        if self.scheduler == "processes":
            return
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("--scheduler needs dask.distributed: pip install 'npuc[explore]'") from None
        if self.scheduler.startswith("local:"):
            n = self.scheduler.partition(":")[2]
            if not n.isdigit() or int(n) < 1:
                raise UserError(f"--scheduler {self.scheduler}: give local:N with N >= 1 workers")
            self.workers = int(n)
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self._client = Client(self._cluster)
        elif "://" in self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout="20s")
            except OSError as e:
                raise UserError(f"--scheduler {self.scheduler}: cannot reach the Dask scheduler ({e})") from None
            self.workers = max(1, sum(w.get("nthreads", 1) for w in
                                      self._client.scheduler_info()["workers"].values()))
        else:
            raise UserError(f"--scheduler {self.scheduler!r}: use local:N or tcp://HOST:PORT")

    @property
    def description(self) -> str:
        if self._client is None:
            return "this process" if self.workers == 0 else f"{self.workers} local worker processes"
        where = "LocalCluster" if self._cluster is not None else self.scheduler
        return f"Dask ({where}, {self.workers} workers)"

    def share(self, **objects: Any) -> dict[str, Any]:
        """Send objects every task reads (graph, data) to the workers once; returns handles."""
        if self._client is not None:
            return {k: self._client.scatter(v, broadcast=True, hash=False) for k, v in objects.items()}
        if self._pool is not None:  # workers started: restart them with the new objects
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.update(objects)
        return {k: Ref(k) for k in objects}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._client is not None:
            return self._client.submit(_dask_call, fn, *args, pure=False)
        if self.workers == 0:
            done: Future = Future()
            _SHARED.update(self._pending)
            done.set_result(_call(fn, *args))
            return done
        if self._pool is None:
            import multiprocessing

            # spawn: torch's thread pools do not survive fork
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(dict(self._pending),))
        return self._pool.submit(_call, fn, *args)

    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        futures = list(futures)
        if self._client is not None:
            from distributed import as_completed

            return iter(as_completed(futures))
        return _local_completed(futures)

    @staticmethod
    def result(future: Future | Any) -> Any:
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
