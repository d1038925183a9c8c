"""Where bench runs execute: ``local`` (threads on this machine) or ``ray`` (tasks on a Ray cluster).

An executor takes jobs, reports finished ones and can cancel what runs; the scheduler in
``cwm.bench.command`` keeps at most ``--parallel`` jobs submitted. New executors register in ``EXECUTORS``.

``local`` runs each job in its own thread with its own event loop. A run closes its event loop's shared
HTTP session when it ends (``cwm.graph.run``), so runs must not share a loop: one thread each keeps one
run's ending from dropping another's in-flight request (a dropped request would be retried and billed
twice). Sandboxed scoring and planning run in child processes, so threads do not contend for the GIL
much. A cancelled run stops where it is; its run directory resumes like any killed run.

``ray`` submits each job as a task (one CPU each) to ``ray.init(address=...)``, or to a local cluster
with ``num_cpus=--parallel`` when no address is given. Runs write their directories on the worker, so on
a multi-node cluster ``--out`` must be a filesystem every node mounts at the same path (NFS, a shared
volume), and every node needs cwm with the same extras, bubblewrap and libseccomp2 for the sandbox, and
the datasets (they ship in the package). The LLM limit is per run (``--concurrency``): at most
``--parallel × --concurrency`` calls are in flight across the cluster, so pick ``--parallel`` from the
provider's rate limit. Progress arrives when each task finishes.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cwm.bench.matrix import BenchSpec, RunSpec
from cwm.bench.runner import Progress, run_one
from cwm.errors import CwmError


@dataclass(frozen=True)
class Job:
    spec: BenchSpec
    run: RunSpec
    bench_dir: Path
    max_cost: float | None = None


@dataclass(frozen=True)
class Outcome:
    job: Job
    status: str
    """``ok``, ``cancelled`` or ``error``."""
    row: dict[str, Any] | None = None
    error: str | None = None


class Executor(Protocol):
    def submit(self, job: Job) -> None: ...
    def wait(self, timeout: float) -> list[Outcome]: ...
    def cancel_all(self) -> None: ...
    def close(self) -> None: ...


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CwmError):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class LocalExecutor:
    def __init__(self, parallel: int, progress: Progress | None = None) -> None:
        self.parallel = parallel
        self.progress = progress
        self._done: queue.Queue[Outcome] = queue.Queue()
        self._tasks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        t = threading.Thread(target=self._work, args=(job,), name=f"bench {job.run.key}", daemon=True)
        self._threads.append(t)
        t.start()

    def _work(self, job: Job) -> None:
        async def main() -> dict[str, Any]:
            task = asyncio.current_task()
            assert task is not None
            with self._lock:
                self._tasks[job.run.key] = (asyncio.get_running_loop(), task)
            return await run_one(job.spec, job.run, job.bench_dir, max_cost=job.max_cost, progress=self.progress)

        try:
            row = asyncio.run(main())
            self._done.put(Outcome(job, "ok", row))
        except asyncio.CancelledError:
            self._done.put(Outcome(job, "cancelled"))
        except Exception as exc:  # reported in results, the other runs go on
            self._done.put(Outcome(job, "error", error=_error_text(exc)))
        finally:
            with self._lock:
                self._tasks.pop(job.run.key, None)

    def wait(self, timeout: float) -> list[Outcome]:
        out: list[Outcome] = []
        try:
            out.append(self._done.get(timeout=timeout))
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        return out

    def cancel_all(self) -> None:
        with self._lock:
            handles = list(self._tasks.values())
        for loop, task in handles:
            loop.call_soon_threadsafe(task.cancel)

    def close(self) -> None:
        for t in self._threads:
            t.join()


def _ray_job(job: Job) -> Outcome:
    """Body of one Ray task (module level, so workers import it from cwm)."""
    try:
        return Outcome(job, "ok", asyncio.run(run_one(job.spec, job.run, job.bench_dir, max_cost=job.max_cost)))
    except Exception as exc:
        return Outcome(job, "error", error=_error_text(exc))


class RayExecutor:
    def __init__(self, parallel: int, address: str | None = None, progress: Progress | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise CwmError("--executor ray needs Ray", hint="pip install 'cwm[ray]'") from exc
        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=parallel, include_dashboard=False, log_to_driver=False)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_job)
        self._refs: dict[Any, Job] = {}

    def submit(self, job: Job) -> None:
        self._refs[self._remote.remote(job)] = job

    def wait(self, timeout: float) -> list[Outcome]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out: list[Outcome] = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                out.append(self.ray.get(ref))
            except (self.ray.exceptions.TaskCancelledError, self.ray.exceptions.WorkerCrashedError):
                out.append(Outcome(job, "cancelled"))
            except Exception as exc:
                out.append(Outcome(job, "error", error=_error_text(exc)))
        return out

    def cancel_all(self) -> None:
        for ref in list(self._refs):
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": lambda parallel, address, progress: LocalExecutor(parallel, progress),
    "ray": lambda parallel, address, progress: RayExecutor(parallel, address, progress),
}


def _ray_baseline(env: str, which: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    from cwm.bench.baselines import compute

    result: dict[str, Any] = asyncio.run(compute(env, which, **kwargs))  # type: ignore[arg-type]
    return result


def ray_baselines(jobs: list[tuple[str, str]], kwargs: dict[str, Any], parallel: int,
                  address: str | None) -> list[dict[str, Any]]:
    """``--baselines-only --executor ray``: one task per (env, random|oracle)."""
    ex = RayExecutor(parallel, address)
    try:
        remote = ex.ray.remote(num_cpus=1, max_retries=0)(_ray_baseline)
        out: list[dict[str, Any]] = ex.ray.get([remote.remote(env, which, kwargs) for env, which in jobs])
        return out
    finally:
        ex.close()
