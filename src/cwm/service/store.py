"""The service's durable state: environments and runs in one SQLite file.

Rows are small (ids, statuses, JSON requests and summaries); the heavy parts of a run (its tree, trace,
checkpoint and LLM cache) stay in the run directory that ``cwm synthesize`` already writes, so a run made by
the service can be inspected and resumed with the CLI too. SQLite is used synchronously: every statement
touches one row and takes microseconds, far less than an event-loop hop to a thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

RunStatus = Literal["queued", "running", "done", "failed", "cancelled"]
EnvStatus = Literal["collecting", "ready", "failed"]
RUN_STATUSES: tuple[RunStatus, ...] = ("queued", "running", "done", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envs (
    id TEXT PRIMARY KEY, gym_id TEXT, env_kwargs TEXT NOT NULL, status TEXT NOT NULL,
    dataset TEXT, description TEXT, error TEXT, transitions INTEGER, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, env TEXT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL,
    run_dir TEXT NOT NULL, summary TEXT, error TEXT, created REAL NOT NULL, updated REAL NOT NULL
);
"""


@dataclass
class EnvRecord:
    id: str
    gym_id: str | None
    env_kwargs: dict[str, Any]
    status: EnvStatus
    dataset: str | None = None
    description: str | None = None
    error: str | None = None
    transitions: int | None = None
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "gym_id": self.gym_id, "env_kwargs": self.env_kwargs, "status": self.status,
                "transitions": self.transitions, "error": self.error,
                "has_description": self.description is not None, "created": self.created}


@dataclass
class RunRecord:
    id: str
    env: str
    request: dict[str, Any]
    status: RunStatus
    run_dir: str
    summary: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "env": self.env, "status": self.status, "request": self.request,
                "summary": self.summary, "error": self.error, "created": self.created, "updated": self.updated}


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # environments
    def put_env(self, e: EnvRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO envs VALUES (?,?,?,?,?,?,?,?,?)",
            (e.id, e.gym_id, json.dumps(e.env_kwargs), e.status, e.dataset, e.description, e.error,
             e.transitions, e.created))

    def get_env(self, env_id: str) -> EnvRecord | None:
        row = self._db.execute("SELECT * FROM envs WHERE id = ?", (env_id,)).fetchone()
        return _env(row) if row else None

    def list_envs(self) -> list[EnvRecord]:
        return [_env(r) for r in self._db.execute("SELECT * FROM envs ORDER BY created")]

    # runs
    def put_run(self, r: RunRecord) -> None:
        r.updated = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
            (r.id, r.env, json.dumps(r.request), r.status, r.run_dir,
             json.dumps(r.summary) if r.summary is not None else None, r.error, r.created, r.updated))

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def list_runs(self, status: str | None = None) -> list[RunRecord]:
        if status is None:
            rows = self._db.execute("SELECT * FROM runs ORDER BY created")
        else:
            rows = self._db.execute("SELECT * FROM runs WHERE status = ? ORDER BY created", (status,))
        return [_run(r) for r in rows]

    def count_runs(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(RUN_STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            counts[status] = n
        return counts


def _env(row: tuple[Any, ...]) -> EnvRecord:
    return EnvRecord(id=row[0], gym_id=row[1], env_kwargs=json.loads(row[2]), status=row[3], dataset=row[4],
                     description=row[5], error=row[6], transitions=row[7], created=row[8])


def _run(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(id=row[0], env=row[1], request=json.loads(row[2]), status=row[3], run_dir=row[4],
                     summary=json.loads(row[5]) if row[5] else None, error=row[6], created=row[7],
                     updated=row[8])
