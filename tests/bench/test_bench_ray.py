"""`cwm bench --executor ray` on a local Ray cluster (num_cpus = --parallel = 2): the same rows come back
as with the local executor, and the run directories are ordinary resumable ones."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from test_bench import run, script

from cwm.agents.llm.fake_server import FakeLLMServer
from fake_llm import serve_in_thread

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra"),
              pytest.mark.slow, pytest.mark.timeout(300)]


def test_bench_on_a_local_ray_cluster(tmp_path):
    """Two tasks at once, on slow replies, share one cluster-wide slot
    (--llm-concurrency 1): the server never sees two calls at once."""
    out = tmp_path / "b"
    with serve_in_thread(FakeLLMServer(script(delay=0.5))) as server:
        done = run([sys.executable, "-m", "cwm.cli", "bench", "--llm", f"openai:fake@{server.base_url}",
                    "--envs", "CartPole-v1", "--methods", "gif-mcts,worldcoder", "--budget", "2",
                    "--plan-episodes", "1", "--plan-max-steps", "8", "--executor", "ray", "--parallel", "2",
                    "--llm-concurrency", "1", "--out", str(out), "--json"], timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    rows = doc["runs"]
    assert [(r["env"], r["method"]) for r in rows] == [("CartPole-v1", "gif-mcts"), ("CartPole-v1", "worldcoder")]
    assert all(r["accuracy"] == 1.0 and r["solved"] and len(r["returns"]) == 1 for r in rows)
    assert sum(r["llm_calls"] for r in rows) == server.answered == 4
    assert server.max_in_flight == 1
    slots = doc["status"]["llm_slots"]  # every call of both tasks went through the one cluster-wide actor
    assert [(s["slots"], s["granted"], s["max_held"], s["held"]) for s in slots.values()] == [(1, 4, 1, 0)]
    assert doc["status"]["state"] == "complete"
    assert (out / "report.md").is_file()
