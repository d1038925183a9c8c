"""Defects a review of ``cwm serve`` found by using it, each pinned so it stays fixed.

Every bad request below once answered 500 (or was silently accepted, or bypassed the LLM allow-list); the
service must answer each with a 4xx JSON error that says what to fix.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from structlog.testing import capture_logs
from test_restart import _call, _free_port
from test_service import Api

from cwm.agents.llm.fake_server import Fail, FakeLLMServer, Reply
from cwm.envs.dataset import load_for_env
from cwm.service import Service, ServiceConfig
from cwm.service.events import parse_last_event_id
from fake_llm import CARTPOLE, fenced


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Service, Api]]:
    service = Service(ServiceConfig(data=tmp_path / "data", default_llm="local", max_runs=2))
    runner = web.AppRunner(service.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as session:
        yield service, Api(f"http://127.0.0.1:{runner.addresses[0][1]}", session)
    await runner.cleanup()


async def _cartpole(api: Api) -> str:
    status, env = await api.call("POST", "/v1/envs", json={"gym_id": "CartPole-v1"})
    assert status == 201
    return str(env["id"])


async def _solved_run(api: Api) -> tuple[str, dict[str, Any]]:
    """A CartPole env and a finished one-call run whose scripted reply is the exact model."""
    env_id = await _cartpole(api)
    async with FakeLLMServer(default=fenced("good")) as llm:
        _, body = await api.call("POST", "/v1/runs", json={"env": env_id, "llm": f"openai:fake@{llm.base_url}",
                                                            "budget": 1})
        return env_id, await api.wait(body["id"])


@pytest.mark.parametrize("llm", [
    "openai:m@http://127.0.0.1:1@evil.example/v1",  # userinfo: the client would connect to evil.example
    "openai:m@http://127.0.0.1:8000@evil.example/v1",
    "openai:m@http://localhost:1@evil.example/v1",
    "openai:m@https://llm.internal.evil.example/v1",  # an operator rule without a trailing slash
    "openai:m@https://llm.internal@evil.example/v1",
])
def test_the_allow_list_cannot_be_bypassed_with_credentials_or_a_longer_host(llm: str) -> None:
    cfg = ServiceConfig(data=Path("/nonexistent"), default_llm="local", allow_llm=("https://llm.internal",))
    assert not cfg.llm_allowed(llm)
    assert cfg.llm_allowed("openai:m@https://llm.internal/v1")
    assert cfg.llm_allowed("openai:m@https://llm.internal:8443/v1")
    assert cfg.llm_allowed("openai:m@http://127.0.0.1:8000/v1")


@pytest.mark.parametrize(("payload", "status", "fragment"), [
    ({"method": ["x"]}, 400, "unknown method"),
    ({"budjet": 100}, 400, "unknown field(s) 'budjet'"),
    ({"env": None}, 400, "'env'"),
])
async def test_run_requests_with_wrong_types_or_typos_are_refused(
        served: tuple[Service, Api], payload: dict[str, Any], status: int, fragment: str) -> None:
    _, api = served
    env_id = await _cartpole(api)
    got, body = await api.call("POST", "/v1/runs", json={"env": env_id, **payload})
    assert got == status and fragment in body["error"], body


@pytest.mark.parametrize(("method", "path", "kw", "status", "fragment"), [
    ("POST", "/v1/runs", {"data": b"[" * 100_000}, 400, "nested too deeply"),
    ("POST", "/v1/runs", {"json": {}}, 400, "'env'"),
    ("POST", "/v1/check", {"json": {"program": CARTPOLE}}, 400, "'env'"),
    ("POST", "/v1/envs", {"data": b"--xx\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=xx"}},
     400, "malformed"),
    ("POST", "/v1/envs", {"data": b"abc", "headers": {"Content-Type": "multipart/form-data"}}, 400, "malformed"),
    ("POST", "/v1/envs", {"json": {"gym_id": "CartPole-v1", "trajectories": "x"}}, 400, "'trajectories'"),
    ("POST", "/v1/envs", {"json": {"gym_id": "CartPole-v1", "name": "a b/c"}}, 400, "'name'"),
    ("POST", "/v1/envs", {"json": {"gym_id": "CartPole-v1", "env_kwarg": {}}}, 400, "unknown field(s)"),
    ("POST", "/v1/envs", {"json": {"gym_id": "CartPole-v1", "description": "x" * 70_000}}, 413,
     "'description' has 70000 characters"),
])
async def test_malformed_requests_get_a_4xx_that_says_what_to_fix(
        served: tuple[Service, Api], method: str, path: str, kw: dict[str, Any], status: int, fragment: str) -> None:
    _, api = served
    async with api.session.request(method, api.base + path, **kw) as r:
        got, body = r.status, json.loads(await r.text())
    assert got == status and isinstance(body, dict) and fragment in body["error"], body


async def test_a_multipart_text_field_that_is_not_utf8_is_refused(served: tuple[Service, Api]) -> None:
    _, api = served
    form = aiohttp.FormData()
    form.add_field("dataset", io.BytesIO(b"PK"), filename="x.npz")
    form.add_field("description", io.BytesIO(b"\xff\xfe"), content_type="text/plain")
    status, body = await api.call("POST", "/v1/envs", data=form)
    assert status == 400 and "'description' is not UTF-8" in body["error"]


def test_a_malformed_last_event_id_is_refused_not_replayed_from_the_start() -> None:
    assert parse_last_event_id(None) == 0 and parse_last_event_id(" 7 ") == 7
    for bad in ("abc", "-5", "1.5", "9" * 30):
        with pytest.raises(ValueError, match="not an event id"):
            parse_last_event_id(bad)


async def test_events_delete_and_plan_of_a_finished_run(served: tuple[Service, Api]) -> None:
    _, api = served
    env_id, run = await _solved_run(api)
    assert run["status"] == "done"
    async with api.session.get(f"{api.base}/v1/runs/{run['id']}/events", headers={"Last-Event-ID": "x1"}) as r:
        assert r.status == 400 and "not an event id" in (await r.json())["error"]
    status, out = await api.call("DELETE", f"/v1/runs/{run['id']}")
    assert status == 409 and "already finished" in out["error"]

    status, out = await api.call("POST", "/v1/plan", json={"env": env_id, "program": "class Environment: pass",
                                                          "episodes": 1})
    assert status == 422 and "failed while planning" in out["error"] and out["program_error"]["kind"]
    status, out = await api.call("POST", "/v1/plan", json={"env": env_id, "program": CARTPOLE, "run": run["id"]})
    assert status == 400 and "either 'program'" in out["error"]
    _, other = await api.call("POST", "/v1/envs", json={"gym_id": "CartPole-v1"})
    status, out = await api.call("POST", "/v1/plan", json={"env": other["id"], "run": run["id"]})
    assert status == 400 and "learned environment" in out["error"]


async def test_a_run_whose_llm_never_answers_is_failed_not_done(served: tuple[Service, Api]) -> None:
    _, api = served
    env_id = await _cartpole(api)
    async with FakeLLMServer(default=Fail(401, "invalid api key")) as llm:
        _, body = await api.call("POST", "/v1/runs", json={"env": env_id, "llm": f"openai:fake@{llm.base_url}",
                                                            "budget": 2})
        run = await api.wait(body["id"])
    assert run["status"] == "failed", run
    assert run["summary"]["program"] is None and run["error"]
    _, metrics = await api.call("GET", "/metrics")
    assert 'cwm_runs{state="failed"} 1' in metrics


async def test_an_internal_error_logs_its_traceback(served: tuple[Service, Api],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    service, api = served

    def broken() -> list[Any]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.store, "list_envs", broken)
    with capture_logs() as logs:
        status, body = await api.call("GET", "/v1/envs")
    assert status == 500 and "Traceback" not in json.dumps(body)
    failed = [e for e in logs if e["event"] == "service.request_failed"]
    assert failed and failed[0]["error"] == "RuntimeError: disk on fire"
    assert "Traceback" in failed[0]["traceback"] and "disk on fire" in failed[0]["traceback"]


async def test_with_a_token_the_page_and_its_static_files_load_but_the_api_stays_guarded(tmp_path: Path) -> None:
    service = Service(ServiceConfig(data=tmp_path / "data", token="s3cret"))
    runner = web.AppRunner(service.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            anonymous = Api(base, session)
            for path in ("/", "/static/app.js", "/static/style.css"):
                assert (await anonymous.call("GET", path))[0] == 200, path
            for path in ("/v1/runs", "/metrics", "/openapi.json"):
                assert (await anonymous.call("GET", path))[0] == 401, path
            async with session.get(f"{base}/v1/runs", headers={"Authorization": "bearer s3cret"}) as r:
                assert r.status == 200  # the auth scheme is case-insensitive (RFC 7235)
    finally:
        await runner.cleanup()


async def test_the_openapi_document_lists_every_route_and_its_error_statuses(served: tuple[Service, Api]) -> None:
    service, api = served
    _, doc = await api.call("GET", "/openapi.json")
    routes = {(r.method.lower(), r.resource.canonical) for r in service.app().router.routes()
              if r.resource is not None and r.method != "HEAD" and not r.resource.canonical.startswith("/static")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes <= documented, routes - documented
    assert "409" in doc["paths"]["/v1/runs/{id}"]["delete"]["responses"]
    assert "422" in doc["paths"]["/v1/plan"]["post"]["responses"]
    assert {"describe", "allow_import", "nodes"} <= set(doc["components"]["schemas"]["RunRequest"]["properties"])


async def test_held_out_transitions_are_scored_by_the_latest_model_but_never_steer_it(
        served: tuple[Service, Api], tmp_path: Path) -> None:
    _, api = served
    env_id, run = await _solved_run(api)
    assert run["status"] == "done" and run["summary"]["nodes"] == 1
    ds = load_for_env("CartPole-v1")
    same = ds.subset(np.flatnonzero(ds.trajectory < 2))
    changed = ds.subset(np.flatnonzero(ds.trajectory == 0))
    changed.reward = changed.reward * 0 + 2.0
    for data, holds in ((same, True), (changed, False)):
        form = aiohttp.FormData()
        form.add_field("dataset", data.save(tmp_path / "up.npz").read_bytes(), filename="up.npz")
        form.add_field("heldout", "true")
        status, out = await api.call("POST", f"/v1/envs/{env_id}/transitions", data=form)
        assert status == 200 and out["recheck"] is None and out["heldout_check"]["run"] == run["id"]
        assert out["heldout_check"]["best_holds"] is holds and out["heldout_check"]["nodes"] == []
    assert out["heldout_check"]["best_accuracy_all"] < 1.0 and out["heldout_transitions"] == len(same) + len(changed)
    _, after = await api.call("GET", f"/v1/runs/{run['id']}")
    assert after["status"] == "done"  # no repair: held-out data never reaches a search
    _, metrics = await api.call("GET", "/metrics")
    assert 'cwm_evaluations_total{source="search"} 1' in metrics
    assert 'cwm_evaluations_total{source="service"} 4' in metrics  # the best program on new and all, twice


async def test_a_shutdown_ends_open_event_streams_cleanly_for_a_resume(tmp_path: Path) -> None:
    service = Service(ServiceConfig(data=tmp_path / "data"))
    runner = web.AppRunner(service.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    lines: list[str] = []
    async with aiohttp.ClientSession() as session, FakeLLMServer(
            default=Reply(fenced("weak_force").text, delay=30)) as llm:
        api = Api(base, session)
        env_id = await _cartpole(api)
        _, body = await api.call("POST", "/v1/runs", json={"env": env_id, "llm": f"openai:fake@{llm.base_url}",
                                                            "budget": 3})
        await api.wait(body["id"], ("running",))
        async with session.get(f"{base}/v1/runs/{body['id']}/events") as r:
            first = await r.content.readline()
            assert first.startswith(b"id: 1")
            with capture_logs() as logs:  # (not around the run: capturing replaces the trace writer)
                await runner.cleanup()  # what SIGTERM runs: drain, then wait for open requests
                lines = [raw.decode() async for raw in r.content]  # ends, neither cut nor hanging
    assert "event: end\n" not in lines  # the run is not over: the reader reconnects with Last-Event-ID
    assert not [e for e in logs if e["event"] == "service.request_failed"]
    reopened = Service(ServiceConfig(data=tmp_path / "data"))
    rec = reopened.store.get_run(body["id"])
    assert rec is not None and rec.status == "queued"  # resumes at the next start
    reopened.store.close()


async def test_an_upload_naming_an_unknown_gym_id_is_refused(served: tuple[Service, Api], tmp_path: Path) -> None:
    _, api = served
    ds = load_for_env("CartPole-v1")
    path = ds.subset(np.flatnonzero(ds.trajectory < 2)).save(tmp_path / "mine.npz")
    form = aiohttp.FormData()
    form.add_field("dataset", path.read_bytes(), filename="mine.npz")
    form.add_field("description", "a cart balances a pole")
    form.add_field("gym_id", "NoSuchEnv-v9")
    status, body = await api.call("POST", "/v1/envs", data=form)
    assert status == 400 and "unknown environment 'NoSuchEnv-v9'" in body["error"]
    _, listing = await api.call("GET", "/v1/envs")
    assert listing["envs"] == []


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_the_page_on_a_token_server_loads_with_the_token_and_says_what_to_do_without(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (dev extra)")
    port, data = _free_port(), tmp_path / "data"
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "cwm.cli", "serve", "--host", "0.0.0.0", "--port", str(port),
                               "--data", str(data)], stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        for _ in range(600):
            try:
                _call(port, "GET", "/healthz")
                break
            except OSError:
                assert server.poll() is None
                time.sleep(0.1)
        token = (data / "token").read_text(encoding="utf-8").strip()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            page = browser.new_page()
            errors: list[str] = []
            refused: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
            page.goto(f"http://127.0.0.1:{port}/?token={token}")
            page.wait_for_selector("#runs")
            page.wait_for_function("document.getElementById('version').textContent.startsWith('v')")
            assert refused == [] and errors == [] and page.locator("#notice").is_hidden()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#notice:not([hidden])")
            assert "?token=" in page.locator("#notice").inner_text() and errors == []
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        log.close()


async def test_concurrent_appends_to_one_environment_all_land(served: tuple[Service, Api], tmp_path: Path) -> None:
    _, api = served
    env_id = await _cartpole(api)
    ds = load_for_env("CartPole-v1")
    piece = ds.subset(np.flatnonzero(ds.trajectory < 2)).save(tmp_path / "piece.npz").read_bytes()

    async def append() -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("dataset", piece, filename="piece.npz")
        form.add_field("repair_budget", "0")
        return await api.call("POST", f"/v1/envs/{env_id}/transitions", data=form)

    results = await asyncio.gather(*(append() for _ in range(4)))
    assert [status for status, _ in results] == [200] * 4, results
    added = int(np.sum(ds.trajectory < 2))
    assert sorted(out["transitions"] for _, out in results) == [len(ds) + added * k for k in range(1, 5)]
    _, env = await api.call("GET", f"/v1/envs/{env_id}")
    assert env["transitions"] == len(ds) + 4 * added


def _descendants(pid: int) -> set[int]:
    """Processes under ``pid`` (from /proc), e.g. a sandbox's bubblewrap and fork-server."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


async def test_a_plan_with_a_looping_program_ends_at_its_deadline_and_frees_the_sandbox(tmp_path: Path) -> None:
    service = Service(ServiceConfig(data=tmp_path / "data", plan_timeout_s=3.0))
    runner = web.AppRunner(service.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    before = _descendants(os.getpid())
    looping = CARTPOLE.replace("def step(self, action):", "def step(self, action):\n        while True: pass")
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(f"http://127.0.0.1:{runner.addresses[0][1]}", session)
            env_id = await _cartpole(api)
            status, body = await api.call("POST", "/v1/plan", json={"env": env_id, "program": looping,
                                                                    "episodes": 1})
        assert status == 422 and "did not finish within 3 s" in body["error"]
        for _ in range(100):  # the sandbox that ran the program is torn down, not left spinning
            if not _descendants(os.getpid()) - before:
                break
            await asyncio.sleep(0.1)
        assert not _descendants(os.getpid()) - before
    finally:
        await runner.cleanup()


async def test_unknown_paths_and_methods_say_what_exists(served: tuple[Service, Api]) -> None:
    _, api = served
    status, body = await api.call("PUT", "/v1/runs")
    assert status == 405 and body["error"] == "PUT is not allowed on /v1/runs; use GET, HEAD, POST"
    status, body = await api.call("GET", "/v1/nothing")
    assert status == 404 and "no endpoint /v1/nothing" in body["error"] and "/openapi.json" in body["hint"]


async def test_static_files_are_served_and_a_missing_one_is_a_json_404(served: tuple[Service, Api]) -> None:
    _, api = served
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        async with api.session.get(f"{api.base}/static/{name}") as r:
            assert r.status == 200 and kind in r.headers["Content-Type"]
    for path in ("/static/nope.js", "/static/..%2fapp.py", "/static/.hidden"):
        status, body = await api.call("GET", path)
        assert status == 404 and isinstance(body, dict) and "error" in body, (path, body)


async def test_a_refused_upload_leaves_nothing_behind_and_names_no_server_path(
        served: tuple[Service, Api]) -> None:
    service, api = served
    form = aiohttp.FormData()
    form.add_field("dataset", io.BytesIO(b"not a zip"), filename="x.npz")
    form.add_field("description", "something")
    status, body = await api.call("POST", "/v1/envs", data=form)
    assert status == 400 and "(the upload)" in body["error"] and str(service.cfg.data) not in body["error"]
    envs = service.cfg.data / "envs"
    assert not envs.exists() or not any(envs.iterdir())  # no empty directory per refused upload
