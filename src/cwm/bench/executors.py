"""Where bench runs execute: ``local`` (one event loop on this machine) or ``ray`` (tasks on a Ray cluster).

An executor takes jobs, reports finished ones and can cancel what runs; the scheduler in
``cwm.bench.command`` keeps at most ``--parallel`` jobs submitted. New executors register in ``EXECUTORS``.

``local`` runs every job as a task on one event loop in a background thread. The runs share one HTTP
connection pool, opened and closed by the executor (a run's end never cuts another's call, which would
be retried and billed twice), and, with ``--llm-concurrency N``, one cap of N calls in flight per
provider, whatever ``--parallel`` is. Sandboxed scoring and planning run in child processes, so the loop
mostly waits. A cancelled run stops where it is; its run directory resumes like any killed run.

``ray`` submits each job as a task (one CPU each) to ``ray.init(address=...)``, or to a local cluster
with ``num_cpus=--parallel`` when no address is given. Runs write their directories on the worker, so on
a multi-node cluster ``--out`` must be a filesystem every node mounts at the same path (NFS, a shared
volume), and every node needs cwm with the same extras, bubblewrap and libseccomp2 for the sandbox, and
the datasets (they ship in the package). With ``--llm-concurrency N`` the cap is one Ray actor per
provider (``cwm.bench.ray_slots``) that every task on every node asks for a slot before each call, so
the cluster as a whole keeps N calls in flight; without it each run is bounded by its own
``--concurrency`` only (``--parallel × --concurrency`` calls at most). Progress arrives when each task
finishes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cwm.bench.matrix import BenchSpec, RunSpec
from cwm.bench.runner import Progress, Shared, run_one
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
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CwmError):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class LocalExecutor:
    def __init__(self, parallel: int, progress: Progress | None = None, llm_concurrency: int | None = None) -> None:
        self.parallel = parallel
        self.progress = progress
        self._done: queue.Queue[Outcome] = queue.Queue()
        self._futures: dict[str, concurrent.futures.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cwm bench runs", daemon=True)
        self._thread.start()
        self._shared = asyncio.run_coroutine_threadsafe(self._open(llm_concurrency), self._loop).result()

    @staticmethod
    async def _open(llm_concurrency: int | None) -> Shared:
        from cwm.agents.llm import HttpPool, ProviderLimits

        return Shared(http=HttpPool(), limits=ProviderLimits(llm_concurrency))

    def submit(self, job: Job) -> None:
        fut = asyncio.run_coroutine_threadsafe(
            run_one(job.spec, job.run, job.bench_dir, max_cost=job.max_cost, progress=self.progress,
                    shared=self._shared), self._loop)
        with self._lock:
            self._futures[job.run.key] = fut
        fut.add_done_callback(lambda f: self._finished(job, f))

    def _finished(self, job: Job, fut: concurrent.futures.Future[dict[str, Any]]) -> None:
        with self._lock:
            self._futures.pop(job.run.key, None)
        if fut.cancelled():
            self._done.put(Outcome(job, "cancelled"))
            return
        exc = fut.exception()
        if exc is None:
            self._done.put(Outcome(job, "ok", fut.result()))
        elif isinstance(exc, asyncio.CancelledError):
            self._done.put(Outcome(job, "cancelled"))
        else:  # reported in results, the other runs go on
            self._done.put(Outcome(job, "error", error=_error_text(exc)))

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
            futures = list(self._futures.values())
        for fut in futures:
            fut.cancel()

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Wait for every run to end, cancelled ones included (they stop at their last checkpoint, their
        sandboxes shut down), then close the shared pool and the loop."""
        asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _drain(self) -> None:
        me = asyncio.current_task()
        # a cancelled future returns at once, while its task may still be unwinding: wait for the tasks
        await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not me), return_exceptions=True)
        if self._shared.http is not None:
            await self._shared.http.aclose()


def _ray_job(job: Job, slots: dict[str, Any] | None = None, per_provider: int | None = None) -> Outcome:
    """Body of one Ray task (module level, so workers import it from cwm). ``slots``: the bench's
    per-provider slot actors, when ``--llm-concurrency`` caps the cluster's calls."""
    from cwm.agents.llm import ProviderLimits
    from cwm.bench.ray_slots import RaySlot

    limits = None
    if slots:
        limits = ProviderLimits(per_provider, make=lambda key, _n: RaySlot(slots[key]))
    try:
        return Outcome(job, "ok", asyncio.run(run_one(job.spec, job.run, job.bench_dir, max_cost=job.max_cost,
                                                      shared=Shared(limits=limits))))
    except Exception as exc:
        return Outcome(job, "error", error=_error_text(exc))


class RayExecutor:
    def __init__(self, parallel: int, address: str | None = None, progress: Progress | None = None,
                 llm_concurrency: int | None = None) -> None:
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
        self.llm_concurrency = llm_concurrency
        self.slots: dict[str, Any] = {}
        """One slots actor per provider, made when the first run calling it is submitted."""

    def _slots_for(self, job: Job) -> dict[str, Any] | None:
        if self.llm_concurrency is None:
            return None
        from cwm.agents.llm.limits import provider_key
        from cwm.bench.ray_slots import slots_actor

        key = provider_key(job.spec.llm)
        if key not in self.slots:
            self.slots[key] = slots_actor(self.ray, self.llm_concurrency, job.spec.timeout_s + 60.0)
        return {key: self.slots[key]}

    def submit(self, job: Job) -> None:
        self._refs[self._remote.remote(job, self._slots_for(job), self.llm_concurrency)] = job

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

    def stats(self) -> dict[str, Any]:
        """``llm_slots``, per provider: slots, held now, most ever held at once, slots granted."""
        if not self.slots:
            return {}
        return {"llm_slots": {key: self.ray.get(actor.stats.remote()) for key, actor in self.slots.items()}}

    def close(self) -> None:
        self.ray.shutdown()


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": lambda parallel, address, progress, llm_concurrency=None: LocalExecutor(parallel, progress,
                                                                                     llm_concurrency),
    "ray": lambda parallel, address, progress, llm_concurrency=None: RayExecutor(parallel, address, progress,
                                                                                 llm_concurrency),
}
"""``name -> factory(parallel, address, progress, llm_concurrency)``."""


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
