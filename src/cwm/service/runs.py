"""Runs inside the service: a bounded pool of concurrent searches, persisted, cancellable and resumable.

Each run is the same ``cwm.graph.run.synthesize`` the CLI calls, writing the same run directory, so its
SQLite checkpoint and LLM cache make a restart cheap: a server killed mid-run resumes every unfinished run
from its last superstep, and calls answered before the kill are replayed from the cache, not paid again.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cwm.agents.llm.limits import ProviderLimits
from cwm.agents.llm.transport import HttpPool
from cwm.errors import CwmError
from cwm.service.store import FINISHED, EnvRecord, RunRecord, Store

log = structlog.get_logger("cwm.service")


@dataclass(frozen=True)
class RunRequest:
    """A validated ``POST /v1/runs`` body."""

    env: str
    llm: str
    budget: int = 10
    method: str = "gif-mcts"
    concurrency: int = 1
    plan: int = 0
    seed: int = 0
    describe: str = "docs+facts"
    allow_import: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"env": self.env, "llm": self.llm, "budget": self.budget, "method": self.method,
                "concurrency": self.concurrency, "plan": self.plan or False, "seed": self.seed,
                "describe": self.describe, "allow_import": list(self.allow_import), "nodes": list(self.nodes)}


class RunManager:
    """Starts queued runs while fewer than ``max_runs`` are running; survives restarts through the store."""

    def __init__(self, store: Store, data: Path, max_runs: int, llm_concurrency: int | None = None) -> None:
        self.store = store
        self.runs_dir = data / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._slots = asyncio.Semaphore(max_runs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._accepting = True
        self.http = HttpPool()
        """Connections every run's LLM client borrows; closed once, by ``close`` at shutdown."""
        self.limits = ProviderLimits(llm_concurrency)
        """One cap per provider (name and base URL), shared by every run of this server."""

    def recover(self) -> int:
        """Reschedule every run the previous server process left unfinished; returns how many."""
        pending = [r for r in self.store.list_runs() if r.status in ("queued", "running")]
        for rec in pending:
            rec.status = "queued"
            self.store.put_run(rec)
            self._schedule(rec)
        return len(pending)

    def submit(self, req: RunRequest, env: EnvRecord) -> RunRecord:
        if not self._accepting:
            raise CwmError("the server is shutting down", hint="retry against the restarted server")
        run_id = uuid.uuid4().hex[:12]
        rec = RunRecord(id=run_id, env=env.id, request=req.to_json(), status="queued",
                        run_dir=str(self.runs_dir / run_id))
        self.store.put_run(rec)
        self._schedule(rec)
        return rec

    async def repair(self, run_id: str, dataset: str, extra_budget: int) -> dict[str, Any]:
        """Re-score a finished run's tree on grown data and queue it to continue its search."""
        from cwm.graph.repair import prepare_repair

        rec = self.store.get_run(run_id)
        if rec is None or rec.status != "done":
            raise CwmError(f"run {run_id!r} is not a finished run")
        result = await prepare_repair(Path(rec.run_dir), dataset, extra_budget)
        rec.request = {**rec.request, "budget": result["budget"]}
        rec.status = "queued"
        self.store.put_run(rec)
        self._schedule(rec)
        return result

    def cancel(self, run_id: str) -> RunRecord | None:
        rec = self.store.get_run(run_id)
        if rec is None or rec.status in FINISHED:
            return rec
        rec.status = "cancelled"
        self.store.put_run(rec)
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
        return rec

    async def drain(self) -> None:
        """Stop taking runs and stop the running ones at their last checkpoint; they resume at next start."""
        self._accepting = False
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """After ``drain``: release what the runs shared."""
        await self.http.aclose()

    def _schedule(self, rec: RunRecord) -> None:
        task = asyncio.create_task(self._execute(rec.id), name=f"cwm-run-{rec.id}")
        self._tasks[rec.id] = task
        run_id = rec.id

        def forget(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(run_id, None)

        task.add_done_callback(forget)

    async def _execute(self, run_id: str) -> None:
        from cwm.graph.run import RunConfig, make_client, synthesize

        async with self._slots:
            rec = self.store.get_run(run_id)
            if rec is None or rec.status != "queued":
                return
            env = self.store.get_env(rec.env)
            if env is None or env.dataset is None:
                rec.status, rec.error = "failed", f"environment {rec.env!r} has no dataset"
                self.store.put_run(rec)
                return
            run_dir = Path(rec.run_dir)
            resume = (run_dir / "checkpoint.sqlite").exists()
            req = rec.request
            cfg = RunConfig(env=env.gym_id or env.id, llm=req["llm"], method=req["method"],
                            budget=int(req["budget"]), concurrency=int(req["concurrency"]), seed=int(req["seed"]),
                            dataset=env.dataset, description=env.description,
                            plan_episodes=int(req["plan"] or 0), run_id=rec.id, env_kwargs=dict(env.env_kwargs),
                            describe=str(req.get("describe", "docs+facts")),
                            allow_import=list(req.get("allow_import", [])), nodes=list(req.get("nodes", [])))
            if resume and (run_dir / "config.json").is_file():
                from cwm.graph.run import load_config

                cfg.heldout_trajectories = load_config(run_dir).heldout_trajectories  # fixed by a repair
            rec.status = "running"
            self.store.put_run(rec)
            log.info("service.run_started", run_id=rec.id, env=rec.env, resume=resume)

            def progress(p: dict[str, Any]) -> None:
                current = self.store.get_run(run_id)
                if current is not None and current.status == "running":
                    current.summary = {**(current.summary or {}), "progress": p}
                    self.store.put_run(current)

            try:
                client = make_client(cfg, run_dir, http=self.http, limit=self.limits.for_llm(cfg.llm))
                summary = await synthesize(cfg, run_dir, resume=resume, on_progress=progress, client=client)
            except asyncio.CancelledError:
                current = self.store.get_run(run_id)
                if current is not None and current.status == "running":  # a shutdown, not a DELETE
                    current.status = "queued"
                    self.store.put_run(current)
                raise
            except CwmError as exc:
                self._finish(run_id, "failed", error=str(exc))
                return
            except Exception as exc:  # a defect must not take the server down; the log has the traceback
                log.error("service.run_crashed", run_id=run_id, error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc())
                self._finish(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
                return
            if summary.get("program") is None:  # no program at all (the LLM failed throughout): not "done"
                error = summary.get("llm_error") or f"the search produced no program (stop: {summary.get('stop')})"
                self._finish(run_id, "failed", summary=summary, error=str(error))
                return
            self._finish(run_id, "done", summary=summary)

    def _finish(self, run_id: str, status: Any, *, summary: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        rec = self.store.get_run(run_id)
        if rec is None or rec.status == "cancelled":
            return
        rec.status, rec.error = status, error
        if summary is not None:
            rec.summary = summary
        self.store.put_run(rec)
        log.info("service.run_finished", run_id=run_id, status=status)
