"""A real `cwm serve` process, killed with SIGKILL mid-run and started again, finishes every run without
paying twice; SIGTERM stops it gracefully."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from fake_llm import VARIANTS, serve_in_thread


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    log = data.parent / f"serve-{port}.log"
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "cwm.cli", "serve", "--port", str(port), "--data",
                                 str(data), "--max-runs", "2"], stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _call(port, "GET", "/healthz")
            return proc
        except OSError:
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.1)
    raise AssertionError("cwm serve did not start")


def _call(port: int, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _wait(port: int, run_ids: list[str], timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    runs: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = {r: _call(port, "GET", f"/v1/runs/{r}") for r in run_ids}
        if all(v["status"] in ("done", "failed", "cancelled") for v in runs.values()):
            return runs
        time.sleep(0.2)
    raise AssertionError(f"runs did not finish: {runs}")


def test_sigkill_and_restart_resumes_every_run_without_repaying(tmp_path: Path) -> None:
    budget = 5
    reply = Reply(f"```python\n{VARIANTS['weak_force']}```", delay=0.3)  # never solves: uses the whole budget
    with serve_in_thread(FakeLLMServer(default=reply)) as llm:
        port = _free_port()
        first = _start(tmp_path / "data", port)
        env = _call(port, "POST", "/v1/envs", {"gym_id": "CartPole-v1"})
        llm_name = f"openai:fake@{llm.base_url}"
        ids = [_call(port, "POST", "/v1/runs", {"env": env["id"], "llm": llm_name, "budget": budget,
                                                "seed": s})["id"] for s in range(2)]
        deadline = time.monotonic() + 60
        while llm.answered < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        time.sleep(1.0)  # requests the dead process had in flight finish (0.3 s each) and are counted
        answered_before = llm.answered
        # replies the killed server received and cached; a reply the LLM server finished while the process
        # was dying was billed but never received, and is the only kind that may be asked for again
        received_before = sum(len(list((tmp_path / "data" / "runs" / r / "llm-cache").glob("*/*.json")))
                              for r in ids)
        assert received_before <= answered_before < 2 * budget

        port2 = _free_port()
        restarted = _start(tmp_path / "data", port2)
        try:
            runs = _wait(port2, ids)
        finally:
            restarted.send_signal(signal.SIGTERM)
            assert restarted.wait(30) == 0, (tmp_path / f"serve-{port2}.log").read_text(errors="replace")
    for run in runs.values():
        assert run["status"] == "done", run
        assert run["summary"]["search_calls"] == budget
    # every reply received before the kill came back from the run's cache: nothing it had was asked again
    assert llm.answered == 2 * budget + (answered_before - received_before)
    assert answered_before - received_before <= 2  # at most the one call in flight per run
