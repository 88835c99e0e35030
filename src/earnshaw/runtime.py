"""The experiment runtime: cells of a run folder computed on a backend, committed as they finish, with progress.

Every command that runs experiments (``demo``, ``run``, ``sweep``, ``verify``, ``reproduce``)
describes its work as :class:`Task` s, one per cell, and hands them to :func:`run_cells`,
which skips the cells its :class:`~earnshaw.store.RunFolder` has committed, computes the
others on a backend and commits each in this process as soon as it comes back. So a killed
run loses at most the cells in flight, and resuming it recomputes no finished cell,
whatever the backend.

Backends (:data:`BACKENDS`):

``local``
    cells one after another in this process (``workers=1``), or in ``workers`` spawned
    processes (each with single-threaded XLA).
``ray``
    cells as Ray tasks (one CPU each, retried on another node when a node dies); ``address``
    names a running cluster (``"127.0.0.1:6379"``, ``"ray://host:10001"``, ``"auto"``), or
    ``None`` starts a local Ray for the run. Results come back to this process, which writes them.

A task function is a module-level function ``fn(*args, progress=None)`` (importable by a worker
process); it may call ``progress(event_dict)`` during the cell, which reaches the caller's
``progress`` from this process and from local worker processes (not from Ray workers).

:class:`Reporter` shows progress: a rich bar when stderr is a terminal, plain lines
(``[sweep] 3/8 cells 38% ...``) when it is not, so a long run in a log file or CI shows it too.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import queue as _queue
import sys
import time
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from earnshaw.store import RunFolder

__all__ = ["Task", "BACKENDS", "run_cells", "run_tasks", "check_backend", "Reporter", "RayUnavailable"]

BACKENDS = ("local", "ray")


class RayUnavailable(RuntimeError):
    """The ray backend was asked for and Ray is not installed."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One cell of work: ``fn(*args, progress=...)`` computes it; ``id`` names it in the run folder.

    Example::

        Task(id="a1b2c3", fn=run_cell_task, args=(cell_json, "a1b2c3"), label="teacher.k=3", index=0)
    """

    id: str
    fn: Callable
    args: tuple = ()
    label: str = ""
    index: int = 0
    #: the run folder cells this task commits, when not just ``id`` (a task that computes several)
    cells: tuple = ()

    def done(self, run: RunFolder) -> bool:
        """Whether every cell of this task is committed in ``run``."""
        return all(run.done(c) for c in (self.cells or (self.id,)))


def _import_ray():
    # Ray is optional (the `ray` extra) and heavy: imported only when the ray backend is used
    try:
        import ray
    except ImportError:
        raise RayUnavailable("the ray backend needs Ray, an optional extra: pip install 'earnshaw[ray]'") from None
    return ray


def check_backend(backend: str, address: Optional[str] = None, workers: int = 1):
    """Raise ``ValueError`` (or :class:`RayUnavailable`) for a backend that cannot run, before any work starts."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ValueError("--address is for --backend ray")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if backend == "ray":
        _import_ray()


# --- backends ---------------------------------------------------------------------------------------------------

def _in_process(todo: Sequence[Task], emit) -> Iterator[tuple]:
    for task in todo:
        yield task, task.fn(*task.args, progress=emit)


def _worker_init():
    # several cells at once on few cores: one XLA thread pool each, not one per core per process
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:  # added to the user's own flags, not instead of them
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()


def _call(fn, args, queue):
    return fn(*args, progress=None if queue is None else queue.put)


def _processes(todo: Sequence[Task], emit, workers: int) -> Iterator[tuple]:
    """Tasks in ``workers`` spawned processes; their in-cell progress comes back through a queue."""
    ctx = mp.get_context("spawn")  # fork after JAX started its threads can deadlock
    manager = ctx.Manager()
    q = manager.Queue()
    try:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futs = {pool.submit(_call, t.fn, t.args, q): t for t in todo}
            pending = set(futs)
            try:
                while pending:
                    done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                    while True:
                        try:
                            emit(q.get_nowait())
                        except _queue.Empty:
                            break
                    for f in done:
                        yield futs[f], f.result()
            except BaseException:
                for f in pending:
                    f.cancel()
                for p in list(getattr(pool, "_processes", {}).values()):
                    p.terminate()
                raise
    finally:
        manager.shutdown()


def _ray_call(fn, args):
    return fn(*args, progress=None)


def _ray(todo: Sequence[Task], address: Optional[str]) -> Iterator[tuple]:
    """Tasks as Ray tasks (``num_cpus=1`` each, retried when a worker or node dies), in completion order."""
    ray = _import_ray()
    # Ray prints cluster events (a task retried after its node died, ...) on stdout from a thread of its
    # own; send them to stderr, so stdout carries only the command's output (e.g. --json)
    with contextlib.redirect_stdout(sys.stderr):
        yield from _ray_session(ray, todo, address)


def _ray_session(ray, todo: Sequence[Task], address: Optional[str]) -> Iterator[tuple]:
    started = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is not None and address.split(":")[0] in ("127.0.0.1", "localhost"):
            kwargs["_node_ip_address"] = "127.0.0.1"  # a loopback cluster: the driver binds to loopback too
        with warnings.catch_warnings():
            # Ray starts its processes with fork+exec, which is safe with JAX's threads
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            if address is None:
                ray.init(**kwargs)  # a local Ray for this run; its workers import earnshaw from this environment
            else:
                ray.init(address=address, **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(_ray_call)
        pending = {remote.remote(t.fn, t.args): t for t in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                yield task, ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def run_tasks(tasks: Sequence[Task], *, backend: str = "local", address: Optional[str] = None, workers: int = 1,
              progress: Optional[Callable[[dict], None]] = None) -> Iterator[tuple]:
    """Compute ``tasks`` on a backend; yields ``(task, result)`` as each finishes (not necessarily in order).

    Example::

        for task, result in run_tasks(tasks, backend="ray", address="127.0.0.1:6379"):
            ...
    """
    check_backend(backend, address, workers)
    emit = progress or (lambda event: None)
    if backend == "ray":
        return _ray(tasks, address)
    if workers > 1 and len(tasks) > 1:
        return _processes(tasks, emit, workers)
    return _in_process(tasks, emit)


def run_cells(run: RunFolder, tasks: Sequence[Task], commit: Callable[[Task, Any], None], *, backend: str = "local",
              address: Optional[str] = None, workers: int = 1, progress: Optional[Callable[[dict], None]] = None,
              after_cell: Optional[Callable[[Task, Any], None]] = None) -> dict:
    """Compute the cells of ``run`` that are not committed yet, committing each as it finishes.

    Args:
      run: the run folder.
      tasks: one :class:`Task` per cell, in the run's order.
      commit: ``commit(task, result)`` writes a finished cell (through :meth:`RunFolder.commit`).
      backend, address, workers: where the cells run (see the module docstring).
      progress: receives ``{"event": "start", "total", "done", "run_dir", "todo": [labels]}``, the tasks'
        own events, and ``{"event": "cell", "cell", "label", "seconds", "done", "total", "result"}`` after
        each commit.
      after_cell: called with ``(task, result)`` after each commit (e.g. to rebuild a results table).

    Returns:
      ``{"computed": [ids, in completion order], "skipped": [ids committed before], "seconds"}``.
    """
    check_backend(backend, address, workers)
    emit = progress or (lambda event: None)
    todo = [t for t in tasks if not t.done(run)]
    skipped = [t.id for t in tasks if t.done(run)]
    run.begin_session(backend=backend, address=address, workers=workers, cells_skipped=len(skipped))
    emit({"event": "start", "total": len(tasks), "done": len(skipped), "run_dir": str(run.path),
          "todo": [t.label for t in todo]})
    start = time.perf_counter()
    computed, last = [], start
    for task, result in run_tasks(todo, backend=backend, address=address, workers=workers, progress=emit):
        now = time.perf_counter()
        commit(task, result)
        computed.append(task.id)
        if after_cell is not None:
            after_cell(task, result)
        emit({"event": "cell", "cell": task.id, "label": task.label, "seconds": now - last,
              "done": len(skipped) + len(computed), "total": len(tasks), "result": result})
        last = now
    elapsed = time.perf_counter() - start
    run.end_session(seconds=elapsed)
    return {"computed": computed, "skipped": skipped, "seconds": elapsed}


# --- progress ---------------------------------------------------------------------------------------------------

class Reporter:
    """Progress of one command: a rich bar when ``file`` is a terminal, plain lines when it is not.

    Plain lines (``[sweep] 3/8 cells 38%, 12 s, ~20 s left: teacher.k=3``) are printed when a
    cell finishes and otherwise at most every ``every`` seconds.

    Example::

        with Reporter("sweep", unit="cells") as rep:
            rep.start(total=8, done=2)
            rep.update(done=3, description="teacher.k=3", force=True)
    """

    def __init__(self, name: str, *, unit: str = "cells", enabled: bool = True, file=None, every: float = 10.0,
                 terminal: Optional[bool] = None):
        self.name, self.unit, self.enabled, self.every = name, unit, enabled, every
        self.console = Console(file=file or sys.stderr)
        self.terminal = self.console.is_terminal if terminal is None else terminal
        self.total = self.done = 0
        self._bar = self._task = None
        self._t0 = self._last = time.perf_counter()

    def __enter__(self):
        if self.enabled and self.terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        return False

    def start(self, total: int, done: int = 0, description: Optional[str] = None):
        """Begin (or restart) the count: ``done`` of ``total`` units are already finished."""
        self.total, self.done = int(total), int(done)
        self._t0 = self._last = time.perf_counter()
        self._done0 = self.done
        if not self.enabled:
            return
        if self._bar is not None:
            text = f"{self.name}: {description or self.unit}"
            self._task = self._bar.add_task(text, total=self.total, completed=self.done)
        else:
            self._line(description)

    def update(self, *, done: Optional[int] = None, advance: int = 0, description: Optional[str] = None,
               force: bool = False):
        """Set or advance the count; ``force`` prints a plain line now (a cell finished)."""
        self.done = int(done) if done is not None else self.done + int(advance)
        if not self.enabled:
            return
        if self._bar is not None:
            if self._task is not None:
                kw = {} if description is None else {"description": f"{self.name}: {description}"}
                self._bar.update(self._task, completed=self.done, **kw)
        elif force or self.done >= self.total or time.perf_counter() - self._last >= self.every:
            self._line(description)

    def print(self, text: str):
        """A line above the bar (or a plain line)."""
        if self.enabled:
            # soft_wrap: a long line (a path) stays one line when the output is not a terminal
            (self._bar.console if self._bar is not None else self.console).print(text, markup=False,
                                                                                 highlight=False, soft_wrap=True)

    def _line(self, description: Optional[str]):
        now = time.perf_counter()
        self._last = now
        elapsed = now - self._t0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        new = self.done - getattr(self, "_done0", 0)
        left = "" if new <= 0 or self.done >= self.total else \
            f", ~{_fmt_s(elapsed / new * (self.total - self.done))} left"
        text = (f"[{self.name}] {self.done}/{self.total} {self.unit} {pct:.0f}%, {_fmt_s(elapsed)}{left}"
                + (f": {description}" if description else ""))
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def _fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

