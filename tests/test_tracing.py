"""Per-run trace binding: concurrent runs in one process each get exactly their own events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog

from cwm.tracing import TraceSink, bind_sink, configure, current_sink, trace_to


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def _fake_run(run_id: str, path: Path, steps: int) -> None:
    log = structlog.get_logger("test.run")
    with trace_to(path), structlog.contextvars.bound_contextvars(run_id=run_id):

        async def child(i: int) -> None:  # a task created inside the run inherits its sink
            await asyncio.sleep(0)
            log.info("child.step", i=i)

        for i in range(steps):
            log.info("run.step", i=i)
            await asyncio.gather(child(i))
            await asyncio.sleep(0)


async def test_concurrent_runs_write_only_their_own_events(tmp_path: Path) -> None:
    configure("error")
    a, b = tmp_path / "a" / "trace.jsonl", tmp_path / "b" / "trace.jsonl"
    await asyncio.gather(_fake_run("run-a", a, 5), _fake_run("run-b", b, 3))
    ea, eb = _lines(a), _lines(b)
    assert [e["run_id"] for e in ea] == ["run-a"] * 10
    assert [e["run_id"] for e in eb] == ["run-b"] * 6
    assert [e["event"] for e in ea[:2]] == ["run.step", "child.step"]
    assert current_sink() is None  # nothing leaks out of the runs


def test_subscribers_see_the_same_events_as_the_file(tmp_path: Path) -> None:
    configure("error")
    sink = TraceSink(tmp_path / "t.jsonl")
    seen: list[dict[str, object]] = []
    unsubscribe = sink.subscribe(seen.append)
    with bind_sink(sink):
        structlog.get_logger("x").info("one", n=1)
        unsubscribe()
        structlog.get_logger("x").info("two", n=2)
    sink.close()
    assert [e["event"] for e in seen] == ["one"]
    assert [e["event"] for e in _lines(tmp_path / "t.jsonl")] == ["one", "two"]


def test_json_log_format_writes_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", fmt="json")
    with structlog.contextvars.bound_contextvars(run_id="r1"):
        structlog.get_logger("x").warning("careful", value=3)
        structlog.get_logger("x").info("quiet")  # below the console level: trace only
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    event = json.loads(err[0])
    assert (event["event"], event["value"], event["run_id"], event["level"]) == ("careful", 3, "r1", "warning")
    configure("warning")


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        configure("warning", fmt="xml")  # type: ignore[arg-type]
