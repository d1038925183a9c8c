"""A process killed between an expansion finishing (its result saved as a pending write) and the step's
checkpoint: the resume applies that result instead of taking the run for finished and paying another call.
The kill is real: a child process exits with ``os._exit`` right after the write reaches SQLite."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from cwm.agents.llm.fake_server import FakeLLMServer
from cwm.graph.run import RunConfig, synthesize
from fake_llm import fenced, serve_in_thread

CHILD = textwrap.dedent("""
    import asyncio, os, sys
    from pathlib import Path
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from cwm.graph.run import RunConfig, synthesize

    real = AsyncSqliteSaver.aput_writes
    seen = [0]

    async def writes(self, config, writes, task_id, task_path=""):
        await real(self, config, writes, task_id, task_path)
        if any(ch == "results" and isinstance(v, list) and v for ch, v in writes):
            seen[0] += 1
            if seen[0] == 2:  # the second expansion's result is on disk; the step's checkpoint is not
                os._exit(137)

    AsyncSqliteSaver.aput_writes = writes
    asyncio.run(synthesize(RunConfig(env="CartPole-v1", llm=sys.argv[1], budget=4), Path(sys.argv[2])))
""")


def test_a_result_saved_before_the_kill_is_applied_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    with serve_in_thread(FakeLLMServer(default=fenced("weak_force"))) as server:  # never solves: whole budget
        llm = f"openai:fake@{server.base_url}"
        child = subprocess.run([sys.executable, "-c", CHILD, llm, str(run_dir)], capture_output=True, text=True,
                               timeout=120, check=False)
        assert child.returncode == 137, child.stderr[-2000:]
        assert len(server.requests) == 2
        summary = asyncio.run(synthesize(RunConfig(env="CartPole-v1", llm=llm, budget=4), run_dir, resume=True))
    assert summary["search_calls"] == 4 and summary["nodes"] == 4
    assert len(server.requests) == 4 and summary["llm_calls"] == 4  # the second reply was not asked again
