"""Where jobs run, behind one ``concurrent.futures.Executor`` interface: inline, local processes, Ray.

Callers submit picklable top-level functions and get ``Future`` objects back, so one scheduling
loop (:func:`model_pool.dag.run_dag`) serves every backend. Ray is optional (the ``distributed``
extra) and imported only when asked for.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable

from model_pool.errors import BadInput, first_line

EXECUTORS = ("local", "ray")
RAY_HINT = "install the distributed extra: pip install -e '.[distributed]'"


class InlineExecutor(Executor):
    """Runs each call at submit time in this process (one worker: no pickling, local tracebacks)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - the caller reads it from the future, as from a worker
            fut.set_exception(e)
        return fut


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Size every thread pool of this process (torch, OpenMP, BLAS) to ``threads``, as Ray does for its
    tasks: workers that each keep a pool per core oversubscribe the machine (2x slower pair scores)."""
    from threadpoolctl import threadpool_limits

    for var in THREAD_VARS:
        os.environ[var] = str(threads)  # libraries loaded later
    threadpool_limits(threads)  # libraries already loaded (numpy's BLAS)
    import torch

    torch.set_num_threads(threads)


def local_processes(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes sharing the cores (each worker's thread pools: cores // workers)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=limit_threads,
                               initargs=(threads,))


def import_ray():
    """The ``ray`` module, or a one-line BadInput naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise BadInput(RAY_HINT) from None
    return ray


class RayExecutor(Executor):
    """Each call is a Ray task with ``num_cpus=1``. Dead workers or nodes are retried up to ``retries``
    times; exceptions raised by the function are not (jobs are seeded, a rerun fails the same way).

    Connects to ``address`` (``auto``, ``HOST:PORT``) or starts a local instance with ``workers`` CPUs;
    an already initialised Ray session (a test fixture, a notebook) is reused and left running."""

    def __init__(self, workers: int = 1, address: str | None = None, retries: int = 2):
        self._ray = ray = import_ray()
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                ray.init(address=address, num_cpus=None if address else max(1, workers), include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise BadInput(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                                f"{first_line(e)}") from None
        self._options = {"num_cpus": 1, "max_retries": retries, "retry_exceptions": False}
        self._remote: dict[Callable, Any] = {}
        self._pending: dict[Any, Future] = {}

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(**self._options)(fn)
        ref = remote.remote(*args, **kwargs)
        out: Future = Future()
        self._pending[ref] = out
        ref.future().add_done_callback(lambda f, ref=ref: self._settle(ref, f))
        return out

    def _settle(self, ref, ray_future: Future) -> None:
        """Copy Ray's outcome into the caller's future, unwrapping RayTaskError to the function's exception."""
        out = self._pending.pop(ref, None)
        if out is None or out.done():
            return
        if ray_future.cancelled():
            out.cancel()
            return
        exc = ray_future.exception()
        if exc is None:
            out.set_result(ray_future.result())
        else:
            cause = getattr(exc, "cause", None)
            out.set_exception(cause if isinstance(cause, BaseException) else exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref, fut in list(self._pending.items()):
                self._ray.cancel(ref)
                fut.cancel()
            self._pending.clear()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def check_executor(kind: str = "local", workers: int = 1, address: str | None = None) -> None:
    """Fail early, in one line, on arguments no executor can take (or on Ray not being installed)."""
    if kind not in EXECUTORS:
        raise BadInput(f"unknown executor {kind!r}; known: {', '.join(EXECUTORS)}")
    if workers < 1:
        raise BadInput(f"--workers must be at least 1, got {workers}")
    if address and kind != "ray":
        raise BadInput("--address names a Ray cluster; use it with --executor ray")
    if kind == "ray":
        import_ray()


def create_executor(kind: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    """``local``: inline for one worker, else spawned processes; ``ray``: Ray tasks (``address``: a cluster)."""
    check_executor(kind, workers, address)
    if kind == "ray":
        return RayExecutor(workers, address)
    return InlineExecutor() if workers == 1 else local_processes(workers)
