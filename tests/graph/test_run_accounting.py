"""A synthesis run's own account of itself: billing across a kill and resume, running time without downtime,
extending a finished run, the anytime curve, exit codes, and what is said when the LLM fails or writes no
code. Everything over the scripted loopback server, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from itertools import cycle

import pytest

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.graph.progress import Segment, Segments, anytime_curve, curve_summary
from fake_llm import fenced, serve_in_thread


def scripted(names: list[str], delay: float = 0.0):
    it = iter(names)
    last = names[-1]

    def script(body: dict) -> Reply:
        reply = fenced(next(it, last), improve="## Correct code" in body["messages"][-1]["content"])
        reply.delay = delay
        return reply

    return script


def cli(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cwm.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_killed_and_resumed_run_counts_every_billed_call(tmp_path):
    """SIGKILL as soon as the third reply is received (while its program is scored, before the superstep
    is saved; the fourth request hangs, so nothing else is billed then): the resumed run serves the third
    reply from its cache, and still reports it as paid."""
    run_dir = tmp_path / "run"
    names = cycle(["weak_force", "never_done", "wrong_reward"])
    seen = [0]

    def script(body: dict) -> Reply:
        seen[0] += 1
        reply = fenced(next(names), "## Correct code" in body["messages"][-1]["content"])
        reply.delay = 60.0 if seen[0] == 4 else 0.0  # in flight at the kill: never answered, never billed
        return reply

    ledger = run_dir / "llm-ledger.jsonl"
    with serve_in_thread(FakeLLMServer(script)) as server:
        proc = cli(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--budget",
                    "6", "--concurrency", "2", "--out", str(run_dir), "--json"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((run_dir / "llm-cache").glob("*/*.json"))) < 3:
            time.sleep(0.001)  # the third reply is in the cache (so the ledger holds it too)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert server.answered == 3
        done = subprocess.run([sys.executable, "-m", "cwm.cli", "synthesize", "--resume", str(run_dir), "--json"],
                              capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr[-2000:]  # ran to its budget without solving
    summary = json.loads(done.stdout)
    assert summary["search_calls"] == 6
    assert server.answered == 6  # the search paid for no reply twice
    assert summary["llm_calls"] == 6  # and reports every billed reply
    assert summary["tokens"] == 15 * 6  # the fake server bills 10 + 5 tokens a reply
    assert summary["cost_usd"] is None  # a model with no price costs "unknown", not 0
    assert summary["segments"] == 2
    assert len(ledger.read_text(encoding="utf-8").splitlines()) == 6


def test_segments_sum_running_time_and_skip_downtime(tmp_path):
    seg = Segments(tmp_path / "segments.json")
    seg.items = [Segment(100.0, 130.0), Segment(1000.0, 1010.0), Segment(1500.0, 1500.5)]
    seg.save()
    again = Segments(tmp_path / "segments.json")
    assert again.running_s == pytest.approx(40.5)
    # the search started at 110: downtime after it is 870 + 490 s, so --max-time sees 40 s of running
    assert again.downtime_since(110.0) == pytest.approx(870 + 490)
    assert again.downtime_since(1005.0) == pytest.approx(490)


def test_resume_with_a_larger_budget_extends_a_finished_run(tmp_path, capsys, monkeypatch):
    from cwm.cli import main

    run_dir = tmp_path / "run"
    with serve_in_thread(FakeLLMServer(scripted(["weak_force", "never_done", "wrong_reward", "good"]))) as server:
        url = server.base_url
        assert main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{url}", "--budget", "2",
                     "--out", str(run_dir), "--json"]) == 1
        first = json.loads(capsys.readouterr().out)
        assert (first["stop"], first["search_calls"], first["llm_calls"]) == ("budget", 2, 2)
        code = main(["synthesize", "--resume", str(run_dir), "--budget", "6", "--seed", "7", "--method",
                     "best-of-n", "--json"])
        captured = capsys.readouterr()
    second = json.loads(captured.out)
    assert "--resume ignores --method, --seed" in captured.err
    assert second["search_calls"] > 2 and second["llm_calls"] == server.answered == second["search_calls"]
    assert second["segments"] == 2
    assert json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["budget"] == 6
    if second["accuracy"] == 1.0:
        assert code == 0 and second["stop"] == "solved"
    else:
        assert code == 1


def test_anytime_curve_in_json_summary_and_progress(tmp_path, capsys):
    from cwm.cli import main

    run_dir = tmp_path / "run"
    with serve_in_thread(FakeLLMServer(scripted(["name_error", "weak_force", "good"]))) as server:
        code = main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--budget",
                     "6", "--out", str(run_dir), "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    curve = out["curve"]
    assert code == 0 and out["stop"] == "solved"
    assert [p["call"] for p in curve] == list(range(1, out["search_calls"] + 1))
    assert len(curve) == out["llm_calls"]
    bests = [p["best"] for p in curve]
    assert bests == sorted(bests) and bests[-1] == out["accuracy"] == 1.0
    assert curve[-1]["heldout"] == out["heldout_accuracy"]
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["curve"] == curve
    assert f"rose at {curve_summary(curve)}" in captured.err  # the progress line (stderr is not a terminal)


def test_curve_keeps_the_earliest_best_on_ties():
    class N:
        def __init__(self, score: float, heldout: float | None) -> None:
            self.score, self.heldout, self.error = score, heldout, None

    curve = anytime_curve([N(0, None), N(0.5, 0.4), N(0.5, 0.9), N(0.2, 0.1), N(0.8, 0.7)])
    assert [(p["best"], p["heldout"]) for p in curve] == [(0.5, 0.4), (0.5, 0.4), (0.5, 0.4), (0.8, 0.7)]
    assert curve_summary(curve) == "1:0.50 4:0.80"


def test_connection_refused_ends_the_run_fast_with_exit_1(tmp_path, capsys):
    from cwm.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    code = main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:m@http://127.0.0.1:{port}/v1",
                 "--budget", "3", "--out", str(run_dir), "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 1
    assert "connection refused" in out["llm_error"] and "overload" not in out["llm_error"]
    assert out["program"] is None and out["llm_calls"] == 0
    assert "stopped on an LLM error" in captured.err and "no program" in captured.err
    events = [json.loads(line)["event"] for line in (run_dir / "trace.jsonl").read_text().splitlines()]
    assert "llm.retry" not in events  # one attempt, no backoff


def test_replies_without_code_are_named(tmp_path, capsys):
    from cwm.cli import main

    with serve_in_thread(FakeLLMServer(default=Reply("I would model the cart as a point mass."))) as server:
        code = main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}",
                     "--budget", "2", "--out", str(tmp_path / "run"), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["no_program_replies"] == 2
    assert "2 of 2 replies held no ```python code block" in captured.err


def test_max_cost_needs_a_price(tmp_path, capsys):
    from cwm.cli import main

    with serve_in_thread(FakeLLMServer(default=fenced("good"))) as server:
        url = f"openai:unpriced-model@{server.base_url}"
        assert main(["synthesize", "--env", "CartPole-v1", "--llm", url, "--max-cost", "1", "--out",
                     str(tmp_path / "a")]) == 2
        assert "price of 'unpriced-model' is unknown" in capsys.readouterr().err
        assert server.requests == [] and not (tmp_path / "a").exists()
        prices = tmp_path / "prices.json"
        prices.write_text('{"unpriced-model": [1.0, 2.0]}', encoding="utf-8")
        assert main(["synthesize", "--env", "CartPole-v1", "--llm", url, "--max-cost", "1", "--prices",
                     str(prices), "--budget", "2", "--out", str(tmp_path / "b"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost_usd"] == pytest.approx(out["llm_calls"] * (10 * 1.0 + 5 * 2.0) / 1e6)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_and_sigterm_name_the_resume_command(tmp_path, sig, code, word):
    run_dir = tmp_path / "run"
    server = FakeLLMServer(default=Reply("```python\npass\n```", delay=3))
    with serve_in_thread(server):
        proc = cli(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--out",
                    str(run_dir)])
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert f"{word}; resume with: cwm synthesize --resume {run_dir}" in err
    assert "Traceback" not in err


def test_max_time_and_wall_time_skip_the_downtime_between_segments(tmp_path, monkeypatch, capsys):
    """Three hours pass between two segments (a shifted clock): the resumed run neither counts them in
    ``wall_s`` nor stops on ``--max-time 600`` because of them."""
    from cwm.cli import main

    real, shift = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + shift[0])
    run_dir = tmp_path / "run"
    with serve_in_thread(FakeLLMServer(scripted(["weak_force", "never_done"]))) as server:
        assert main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--budget",
                     "2", "--max-time", "600", "--out", str(run_dir), "--json"]) == 1
        capsys.readouterr()
        shift[0] = 3 * 3600.0
        assert main(["synthesize", "--resume", str(run_dir), "--budget", "4", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["stop"] == "budget" and out["search_calls"] == 4
    assert out["segments"] == 2 and out["wall_s"] < 600 and out["search_s"] < 600


def test_record_then_replay_a_whole_run_offline(tmp_path, capsys):
    from cwm.cli import main

    cassette = tmp_path / "run.jsonl"
    with serve_in_thread(FakeLLMServer(scripted(["weak_force", "good"]))) as server:
        url = f"openai:fake@{server.base_url}"
        assert main(["synthesize", "--env", "CartPole-v1", "--llm", url, "--budget", "3", "--record",
                     str(cassette), "--out", str(tmp_path / "a"), "--json"]) == 0
        recorded = json.loads(capsys.readouterr().out)
    # the server is gone: every call is answered from the cassette, and none is paid
    assert main(["synthesize", "--env", "CartPole-v1", "--llm", url, "--budget", "3", "--replay", str(cassette),
                 "--out", str(tmp_path / "b"), "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["curve"] == recorded["curve"] and replayed["accuracy"] == 1.0
    assert (recorded["llm_calls"], replayed["llm_calls"]) == (recorded["search_calls"], 0)
