"""The service over real HTTP on loopback: a real aiohttp server, the scripted LLM server, real searches."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.envs.dataset import load_for_env
from cwm.service import Service, ServiceConfig
from fake_llm import CARTPOLE, fenced


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession, token: str | None = None) -> None:
        self.base, self.session = base, session
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, headers=self.headers, **kw) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def wait(self, run_id: str, statuses: tuple[str, ...] = ("done", "failed", "cancelled"),
                   polls: int = 600) -> dict[str, Any]:
        for _ in range(polls):
            status, body = await self.call("GET", f"/v1/runs/{run_id}")
            assert status == 200
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"run {run_id} never reached {statuses}: {body}")

    async def events(self, run_id: str, last: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        headers = dict(self.headers)
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        out: list[tuple[int, dict[str, Any]]] = []
        async with self.session.get(f"{self.base}/v1/runs/{run_id}/events", headers=headers) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            event_id, kind = None, None
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind != "end":
                    assert event_id is not None
                    out.append((event_id, json.loads(line[6:])))
                elif not line:
                    event_id, kind = None, None
        return out


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Service, Api]]:
    service = Service(ServiceConfig(data=tmp_path / "data", default_llm="local", max_runs=2))
    runner = web.AppRunner(service.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield service, Api(f"http://127.0.0.1:{port}", session)
    await runner.cleanup()


async def _cartpole(api: Api) -> str:
    status, env = await api.call("POST", "/v1/envs", json={"gym_id": "CartPole-v1"})
    assert status == 201 and env["status"] == "ready" and env["transitions"] == 402
    return str(env["id"])


async def test_a_run_goes_from_request_to_solved_program_with_its_events(served: tuple[Service, Api]) -> None:
    _, api = served
    env_id = await _cartpole(api)
    async with FakeLLMServer([fenced("wrong_reward"), fenced("good", improve=True)],
                             default=fenced("good")) as llm:
        status, body = await api.call("POST", "/v1/runs", json={
            "env": env_id, "llm": f"openai:fake@{llm.base_url}", "budget": 4})
        assert status == 202
        run = await api.wait(body["id"])
    assert run["status"] == "done", run
    assert run["summary"]["accuracy"] == 1.0 and run["summary"]["stop"] == "solved"
    config = json.loads((Path(run["summary"]["run_dir"]) / "config.json").read_text(encoding="utf-8"))
    assert (config["describe"], config["env_kwargs"], config["allow_import"], config["nodes"]) == (
        "docs+facts", {}, [], [])
    status, program = await api.call("GET", f"/v1/runs/{body['id']}/program")
    assert status == 200 and program == CARTPOLE

    events = await api.events(body["id"])
    ids = [i for i, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {e["run_id"] for _, e in events} == {body["id"]}
    kinds = [e["event"] for _, e in events]
    assert kinds[0] == "run.start" and "mcts.expand" in kinds and "run.summary" in kinds
    # resuming from any event id gives exactly the rest: no gap, no duplicate
    cut = ids[len(ids) // 2]
    rest = await api.events(body["id"], last=cut)
    assert [i for i, _ in rest] == [i for i in ids if i > cut]
    assert [e for _, e in rest] == [e for i, e in events if i > cut]


async def test_a_run_can_be_cancelled_while_it_waits_for_the_llm(served: tuple[Service, Api]) -> None:
    _, api = served
    env_id = await _cartpole(api)
    slow = Reply(fenced("weak_force").text, delay=30)
    async with FakeLLMServer(default=slow) as llm:
        _, body = await api.call("POST", "/v1/runs", json={"env": env_id, "llm": f"openai:fake@{llm.base_url}",
                                                            "budget": 3})
        await api.wait(body["id"], ("running",))
        for _ in range(100):
            if llm.requests:
                break
            await asyncio.sleep(0.05)
        status, cancelled = await api.call("DELETE", f"/v1/runs/{body['id']}")
        assert status == 200 and cancelled["status"] == "cancelled"
        final = await api.wait(body["id"])
    assert final["status"] == "cancelled"
    events = await api.events(body["id"])  # the stream of a finished run ends instead of hanging
    assert events and events[0][1]["event"] == "run.start"


@pytest.mark.parametrize(("method", "path", "payload", "status", "fragment"), [
    ("POST", "/v1/runs", b"not json", 400, "not JSON"),
    ("POST", "/v1/runs", [1, 2], 400, "JSON object"),
    ("POST", "/v1/runs", {"env": "nope"}, 404, "no environment"),
    ("POST", "/v1/envs", {}, 400, "gym_id"),
    ("POST", "/v1/envs", {"gym_id": "CartPol-v1"}, 400, "CartPole"),
    ("POST", "/v1/envs", {"gym_id": "CartPole-v1", "env_kwargs": [1]}, 400, "env_kwargs"),
    ("GET", "/v1/runs/unknown", None, 404, "no run"),
    ("GET", "/v1/runs/unknown/events", None, 404, "no run"),
    ("DELETE", "/v1/runs/unknown", None, 404, "no run"),
    ("GET", "/v1/envs/unknown", None, 404, "no environment"),
    ("POST", "/v1/check", {"env": "nope", "program": "x"}, 404, "no environment"),
    ("GET", "/v1/nothing", None, 404, ""),
])
async def test_bad_requests_get_a_json_error_that_says_what_to_fix(
        served: tuple[Service, Api], method: str, path: str, payload: Any, status: int, fragment: str) -> None:
    _, api = served
    kw: dict[str, Any] = {}
    if isinstance(payload, bytes):
        kw["data"] = payload
    elif payload is not None:
        kw["json"] = payload
    got, body = await api.call(method, path, **kw)
    assert got == status
    assert isinstance(body, dict) and fragment in body["error"]
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize(("field", "value"), [
    ("budget", 0), ("budget", "ten"), ("budget", True), ("concurrency", 100), ("plan", 0), ("plan", "yes"),
    ("method", "simulated-annealing"), ("llm", ""), ("describe", "code"), ("allow_import", "mujoco"),
    ("allow_import", ["os; rm -rf /"]), ("nodes", ["os:system"]), ("nodes", "analyze"),
])
async def test_run_requests_are_validated(served: tuple[Service, Api], field: str, value: Any) -> None:
    _, api = served
    env_id = await _cartpole(api)
    status, body = await api.call("POST", "/v1/runs", json={"env": env_id, field: value})
    assert status == 400 and (field in body["error"] or "provider" in body["error"])


@pytest.mark.parametrize("llm", [
    "openai:gpt-4o",  # the server's OpenAI key must not be spent by a request
    "anthropic:claude-sonnet-4-5",
    "openai:m@https://evil.example/v1",
    "openai:m@http://127.0.0.1.evil.example/v1",  # a prefix trick
    "openai:m@http://10.0.0.1:8000/v1",
])
async def test_providers_off_the_allow_list_are_refused(served: tuple[Service, Api], llm: str) -> None:
    _, api = served
    env_id = await _cartpole(api)
    status, body = await api.call("POST", "/v1/runs", json={"env": env_id, "llm": llm})
    assert status == 403 and "allow-list" in body["error"]


def test_allow_list_rules() -> None:
    cfg = ServiceConfig(data=Path("/nonexistent"), default_llm="openai:gpt-4o",
                        allow_llm=("anthropic", "https://llm.internal/v1"))
    assert cfg.llm_allowed("openai:gpt-4o")
    assert not cfg.llm_allowed("openai:gpt-4o-mini")  # only the default string itself
    assert cfg.llm_allowed("anthropic:claude-sonnet-4-5")
    assert not cfg.llm_allowed("anthropic:x@https://evil.example/v1")  # a named provider at another URL
    assert cfg.llm_allowed("vllm:qwen@https://llm.internal/v1")
    assert cfg.llm_allowed("vllm:qwen@http://127.0.0.1:8000/v1")
    assert not cfg.llm_allowed("vllm:qwen")  # default port on loopback, but not named explicitly
    assert not cfg.llm_allowed("local")


async def test_check_scores_a_program_on_the_environments_data(served: tuple[Service, Api]) -> None:
    _, api = served
    env_id = await _cartpole(api)
    status, report = await api.call("POST", "/v1/check", json={"env": env_id, "program": CARTPOLE})
    assert status == 200 and report["accuracy"] == 1.0 and report["passed"] is True
    status, report = await api.call("POST", "/v1/check", json={
        "env": env_id, "program": CARTPOLE.replace("1.0, done", "0.5, done")})
    assert status == 200 and report["passed"] is False and report["failures"]


async def test_an_uploaded_dataset_becomes_an_environment(served: tuple[Service, Api], tmp_path: Path) -> None:
    _, api = served
    ds = load_for_env("CartPole-v1")
    path = ds.subset(np.flatnonzero(ds.trajectory < 3)).save(tmp_path / "mine.npz")
    form = aiohttp.FormData()
    form.add_field("dataset", path.read_bytes(), filename="mine.npz", content_type="application/octet-stream")
    form.add_field("description", "A cart balances a pole; state is x, x_dot, theta, theta_dot.")
    form.add_field("name", "my-cartpole")
    status, env = await api.call("POST", "/v1/envs", data=form)
    assert status == 201 and env["status"] == "ready" and env["id"].startswith("my-cartpole-")
    assert env["transitions"] == int(np.sum(ds.trajectory < 3)) and env["has_description"]

    bad = aiohttp.FormData()
    bad.add_field("dataset", io.BytesIO(b"PK\x03\x04 not really"), filename="x.npz")
    bad.add_field("description", "something")
    status, body = await api.call("POST", "/v1/envs", data=bad)
    assert status == 400 and "not a valid cwm-dataset" in body["error"]
    missing = aiohttp.FormData()
    missing.add_field("dataset", path.read_bytes(), filename="mine.npz")
    status, body = await api.call("POST", "/v1/envs", data=missing)
    assert status == 400 and "description" in body["error"]


async def test_a_new_gym_environment_is_collected_in_the_background(served: tuple[Service, Api]) -> None:
    _, api = served
    status, env = await api.call("POST", "/v1/envs", json={"gym_id": "FrozenLake-v1", "trajectories": 2,
                                                           "max_steps": 5})
    assert status == 202 and env["status"] == "collecting"
    for _ in range(200):
        _, env = await api.call("GET", f"/v1/envs/{env['id']}")
        if env["status"] != "collecting":
            break
        await asyncio.sleep(0.05)
    assert env["status"] == "ready", env
    assert 2 <= env["transitions"] <= 10
    _, listing = await api.call("GET", "/v1/envs")
    assert [e["id"] for e in listing["envs"]] == [env["id"]]


async def test_operations_endpoints(served: tuple[Service, Api]) -> None:
    _, api = served
    status, health = await api.call("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/v1/runs", "/v1/runs/{id}/events", "/v1/envs", "/v1/check", "/v1/plan"} <= set(doc["paths"])
    status, metrics = await api.call("GET", "/metrics")
    assert status == 200 and 'cwm_runs{state="queued"} 0' in metrics and "cwm_queue_depth 0" in metrics
    status, page = await api.call("GET", "/")
    assert status == 200 and "<svg id=\"tree\"" in page


async def test_a_token_guards_every_endpoint_but_health(tmp_path: Path) -> None:
    service = Service(ServiceConfig(data=tmp_path / "data", token="s3cret"))
    runner = web.AppRunner(service.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            assert (await Api(base, session).call("GET", "/healthz"))[0] == 200
            status, body = await Api(base, session).call("GET", "/v1/runs")
            assert status == 401 and "bearer token" in body["error"]
            assert (await Api(base, session, token="wrong").call("GET", "/v1/runs"))[0] == 401
            assert (await Api(base, session, token="s3cret").call("GET", "/v1/runs"))[0] == 200
    finally:
        await runner.cleanup()


def _npz_form(path: Path, **extra: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("dataset", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
    for k, v in extra.items():
        form.add_field(k, v)
    return form


async def test_new_transitions_are_appended_and_the_latest_run_is_rechecked_and_repaired(
        served: tuple[Service, Api], tmp_path: Path) -> None:
    _, api = served
    env_id = await _cartpole(api)
    async with FakeLLMServer([fenced("wrong_reward"), fenced("good", improve=True)],
                             default=fenced("good")) as llm:
        _, body = await api.call("POST", "/v1/runs", json={"env": env_id, "llm": f"openai:fake@{llm.base_url}",
                                                            "budget": 4})
        first = await api.wait(body["id"])
        assert first["status"] == "done"
        calls = first["summary"]["search_calls"]
        assert len(llm.requests) == calls
        ds = load_for_env("CartPole-v1")
        same = ds.subset(np.flatnonzero(ds.trajectory < 2)).save(tmp_path / "same.npz")
        status, out = await api.call("POST", f"/v1/envs/{env_id}/transitions", data=_npz_form(same))
        assert status == 200 and out["appended"] == int(np.sum(ds.trajectory < 2))
        assert out["transitions"] == len(ds) + out["appended"]
        assert out["recheck"]["run"] == body["id"] and out["recheck"]["best_holds"] is True
        assert out["repair"] is None  # nothing to repair
        rescored = {n["node"]: n["accuracy"] for n in out["recheck"]["nodes"]}
        assert max(rescored.values()) == 1.0 and min(rescored.values()) < 1.0  # the wrong-reward node stays wrong

        changed = ds.subset(np.flatnonzero(ds.trajectory == 0))
        changed.reward = changed.reward * 0 + 2.0  # the environment now pays 2 per step: the model is out of date
        status, out = await api.call("POST", f"/v1/envs/{env_id}/transitions",
                                     data=_npz_form(changed.save(tmp_path / "changed.npz"), repair_budget="3"))
        assert status == 200 and out["recheck"]["best_holds"] is False
        assert out["recheck"]["best_accuracy_new"] < 1.0 and out["recheck"]["failures"]
        assert out["repair"]["run"] == body["id"] and out["repair"]["best_now"] < 1.0
        repaired = await api.wait(body["id"])
        assert repaired["status"] == "done", repaired
        # the search went on from its tree: three more calls, none of the earlier ones paid again
        assert repaired["summary"]["search_calls"] == calls + 3
        assert len(llm.requests) == calls + 3
        assert repaired["summary"]["accuracy"] < 1.0
        config = json.loads((Path(repaired["summary"]["run_dir"]) / "config.json").read_text(encoding="utf-8"))
        assert config["heldout_trajectories"] is not None  # the held-out split stayed what it was
        _, env = await api.call("GET", f"/v1/envs/{env_id}")
        assert env["transitions"] == out["transitions"]

        status, out = await api.call("POST", f"/v1/envs/{env_id}/transitions", data=_npz_form(same, heldout="true"))
        assert status == 200 and out["heldout"] is True and out["recheck"] is None
        _, env2 = await api.call("GET", f"/v1/envs/{env_id}")
        assert env2["transitions"] == env["transitions"]  # held-out data never joins what the search sees


async def test_transitions_that_do_not_fit_are_refused(served: tuple[Service, Api], tmp_path: Path) -> None:
    _, api = served
    env_id = await _cartpole(api)
    taxi = load_for_env("Taxi-v3")
    status, body = await api.call("POST", f"/v1/envs/{env_id}/transitions",
                                  data=_npz_form(taxi.save(tmp_path / "taxi.npz")))
    assert status == 400 and "do not fit" in body["error"]
    status, body = await api.call("POST", f"/v1/envs/{env_id}/transitions", json={"x": 1})
    assert status == 400 and "multipart" in body["error"]


@pytest.mark.parametrize(("shared", "expected"), [(1, 1), (None, 2)])
async def test_runs_share_a_providers_call_limit(tmp_path: Path, shared: int | None, expected: int) -> None:
    service = Service(ServiceConfig(data=tmp_path / "data", max_runs=2, llm_concurrency=shared))
    runner = web.AppRunner(service.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession() as session, FakeLLMServer(
                default=Reply(fenced("weak_force").text, delay=0.3)) as llm:
            api = Api(f"http://127.0.0.1:{runner.addresses[0][1]}", session)
            env_id = await _cartpole(api)
            ids = [(await api.call("POST", "/v1/runs", json={
                "env": env_id, "llm": f"openai:fake@{llm.base_url}", "budget": 3, "seed": s}))[1]["id"]
                for s in range(2)]
            for run_id in ids:
                assert (await api.wait(run_id))["status"] == "done"
        assert llm.answered == 6 and llm.max_in_flight == expected
    finally:
        await runner.cleanup()
