"""``cwm serve``: the long-lived agent as an aiohttp application.

One process hosts many runs (each with its own trace sink, LLM cache and sandbox), persists them in SQLite
under the data directory, and exposes them over a small JSON API, Server-Sent Events of every run's trace,
Prometheus metrics and a static web page. Everything a request can name that would spend money or reach
the network (the LLM provider and its base URL) is checked against an allow-list fixed at start-up, so a
request cannot send the server's API keys to a host of its choosing.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import secrets
import shutil
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from cwm import __version__
from cwm.errors import CwmError
from cwm.service.events import end_event, format_sse, parse_last_event_id, trace_events
from cwm.service.openapi import openapi_document
from cwm.service.runs import RunManager, RunRequest
from cwm.service.store import FINISHED, EnvRecord, Store

log = structlog.get_logger("cwm.service")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_DESCRIPTION = 64_000
MAX_PROGRAM = 1_000_000
LOOPBACK_URLS = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/")
SELF_HOSTED_KEY = "CWM_LLM_API_KEY"
"""The key a self-hosted server's URL is called with; hosted services' keys never go to a default-allowed URL."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PUBLIC = frozenset({"/healthz", "/"})
_ENV_FIELDS = frozenset({"gym_id", "env_kwargs", "name", "description", "trajectories", "max_steps"})
_RUN_FIELDS = frozenset({"env", "llm", "budget", "method", "concurrency", "plan", "seed", "describe",
                         "allow_import", "nodes"})


@dataclass
class ServiceConfig:
    data: Path
    default_llm: str = "local"
    max_runs: int = 2
    allow_llm: tuple[str, ...] = ()
    """Provider names (``openai``), exact provider strings, or base-URL prefixes a run may use."""
    token: str | None = None
    """Bearer token every request must carry (set when binding a non-loopback address)."""
    max_upload_mb: int = 64
    max_plan_episodes: int = 20
    plan_timeout_s: float = 600.0
    """Deadline of one POST /v1/plan (its sandbox session is closed, and the program killed, after it)."""
    llm_concurrency: int | None = None
    """Calls in flight per provider across all runs (None: only each run's own --concurrency)."""
    started: float = field(default_factory=time.time)

    def llm_allowed(self, llm: str) -> bool:
        return self.llm_refusal(llm) is None

    def llm_refusal(self, llm: str) -> str | None:
        """Why a run may not call ``llm`` (None: it may). Loopback base URLs are allowed by default, but
        not for a provider whose key there is a hosted service's own (``anthropic:M@http://127.0.0.1:P``
        would hand $ANTHROPIC_API_KEY to whatever listens on P): such a URL must be allow-listed by name."""
        from cwm.agents.llm.spec import parse_provider

        spec = parse_provider(llm)
        explicit_url = "@" in llm
        for rule in (*self.allow_llm, self.default_llm):
            if rule.startswith(("http://", "https://")):
                if spec.base_url and explicit_url and _url_under(spec.base_url, rule):
                    return None
            elif llm == rule or (not explicit_url and spec.name == rule) or (spec.api == "local" and rule == "local"):
                return None
        if explicit_url and spec.base_url and any(_url_under(spec.base_url, rule) for rule in LOOPBACK_URLS):
            if spec.key_env in (None, SELF_HOSTED_KEY):
                return None
            return (f"provider {llm!r} would send ${spec.key_env} to a loopback port that is not on the "
                    f"allow-list; the operator allows that server with --allow-llm {spec.base_url}")
        return (f"provider {llm!r} is not on this server's allow-list; the operator adds it with "
                "--allow-llm PROVIDER|URL-PREFIX")


def _url_under(url: str, rule: str) -> bool:
    """``url`` starts with the allow-list prefix ``rule`` at a component boundary, and the host it reaches is
    the one the prefix names: credentials in the authority (``http://127.0.0.1:1@evil.example``) would
    make the client connect to the host after the ``@``, so such URLs never match."""
    from yarl import URL

    try:
        parsed = URL(url)
    except ValueError:
        return False
    if parsed.user is not None or parsed.password is not None or not parsed.host:
        return False
    if not url.startswith(rule):
        return False
    rest = url[len(rule):]
    return rule.endswith(("/", ":")) or not rest or rest[0] in "/:?#"


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    return web.json_response(body, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error that says what to fix; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.text is not None and not exc.text.startswith(str(exc.status)):
            return _error(exc.status, exc.text)
        if isinstance(exc, web.HTTPMethodNotAllowed):  # the router's own: say what would work
            return _error(405, f"{request.method} is not allowed on {request.path}; use "
                               f"{', '.join(sorted(exc.allowed_methods))}")
        if isinstance(exc, web.HTTPNotFound):
            return _error(404, f"no endpoint {request.path}", hint="GET /openapi.json lists the endpoints")
        return _error(exc.status, exc.reason)
    except CwmError as exc:
        return _error(400, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # the JSON log renders no exc_info, so the traceback travels as text the operator can read
        log.error("service.request_failed", path=request.path, error=f"{type(exc).__name__}: {exc}",
                  traceback=traceback.format_exc())
        return _error(500, "internal error; the server log has the details")


def _auth(token: str | None) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        # the page and its static files carry no data (the page asks the API with ?token=); guarding them
        # would leave a browser on /?token=... with a page whose script and stylesheet are refused
        if token is None or request.path in _PUBLIC or request.path.startswith("/static/"):
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        supplied = given.strip() if scheme.lower() == "bearer" else request.query.get("token", "")
        if not hmac.compare_digest(supplied.encode(), token.encode()):
            return _error(401, "missing or wrong bearer token",
                          hint="send 'Authorization: Bearer TOKEN' (the token printed at first start)")
        return await handler(request)

    return check


class Service:
    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        cfg.data.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.data / "service.sqlite")
        self.runs = RunManager(self.store, cfg.data, cfg.max_runs, cfg.llm_concurrency)
        self._collections: set[asyncio.Task[None]] = set()
        self._env_locks: dict[str, asyncio.Lock] = {}
        self.requests = 0
        self.stopping = False
        """Set when shutdown begins; event streams end so the stop is not held open by readers."""
        self.evaluations = 0
        """Sandbox evaluations this process ran itself (/v1/check, re-checks of appended transitions)."""

    # ---------- helpers
    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise web.HTTPBadRequest(text="the body is not JSON this server reads: nested too deeply") from exc
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return body

    async def _fields(self, request: web.Request, known: frozenset[str]) -> dict[str, Any]:
        """The JSON object body, refusing keys the endpoint does not read (a typo such as ``budjet`` would
        otherwise run with the default silently)."""
        body = await self._json(request)
        unknown = sorted(set(body) - known)
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown field(s) {', '.join(map(repr, unknown))}; this endpoint "
                                          f"reads {', '.join(sorted(known))}")
        return body

    def _env_of(self, body: dict[str, Any]) -> EnvRecord:
        env_id = body.get("env")
        if not isinstance(env_id, str) or not env_id:
            raise web.HTTPBadRequest(text="'env' (the id POST /v1/envs returned) is required")
        return self._env(env_id)

    def _env(self, env_id: str) -> EnvRecord:
        env = self.store.get_env(env_id)
        if env is None:
            raise web.HTTPNotFound(text=f"no environment {env_id!r}; register it with POST /v1/envs")
        return env

    def _run(self, run_id: str) -> Any:
        rec = self.store.get_run(run_id)
        if rec is None:
            raise web.HTTPNotFound(text=f"no run {run_id!r}")
        return rec

    # ---------- environments
    async def post_env(self, request: web.Request) -> web.Response:
        if request.content_type.startswith("multipart/"):
            return await self._upload_env(request)
        body = await self._fields(request, _ENV_FIELDS)
        gym_id = body.get("gym_id")
        if not isinstance(gym_id, str) or not gym_id:
            raise web.HTTPBadRequest(text="'gym_id' (a gymnasium id such as 'FrozenLake-v1') is required; "
                                          "or upload a cwm-dataset .npz as multipart field 'dataset'")
        kwargs = body.get("env_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise web.HTTPBadRequest(text="'env_kwargs' must be a JSON object")
        description = _description(body.get("description"))
        from cwm.envs.dataset import bundled_path
        from cwm.envs.registry import resolve_gym_id

        trajectories = _int(body, "trajectories", 10, 1, 100)
        max_steps = _int(body, "max_steps", 100, 1, 1000)
        name = _name(body.get("name"))
        await asyncio.to_thread(resolve_gym_id, gym_id)  # unknown ids fail here with a did-you-mean
        env_id = _new_id(name, gym_id)
        env_dir = self.cfg.data / "envs" / env_id
        env_dir.mkdir(parents=True, exist_ok=True)
        desc_path = _write_description(env_dir, description)
        bundled = bundled_path(gym_id) if not kwargs else None
        if bundled is not None:
            from cwm.envs.dataset import load

            ds = load(bundled)
            rec = EnvRecord(env_id, gym_id, kwargs, "ready", str(bundled), desc_path, transitions=len(ds))
            self.store.put_env(rec)
            return web.json_response(rec.to_json(), status=201)
        rec = EnvRecord(env_id, gym_id, kwargs, "collecting", None, desc_path)
        self.store.put_env(rec)
        task = asyncio.create_task(self._collect(rec, env_dir, trajectories, max_steps))
        self._collections.add(task)
        task.add_done_callback(self._collections.discard)
        return web.json_response(rec.to_json(), status=202)

    async def _collect(self, rec: EnvRecord, env_dir: Path, trajectories: int, max_steps: int) -> None:
        from cwm.envs.collect import CollectConfig, collect

        try:
            cfg = CollectConfig(trajectories=trajectories, max_steps=max_steps)
            ds = await asyncio.to_thread(_collect_with_kwargs, collect, rec.gym_id or rec.id, cfg, rec.env_kwargs)
            path = env_dir / "dataset.npz"
            await asyncio.to_thread(ds.save, path)
            rec.status, rec.dataset, rec.transitions = "ready", str(path), len(ds)
        except Exception as exc:  # collection runs arbitrary environment code; report, never crash
            rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
        self.store.put_env(rec)

    async def _upload_env(self, request: web.Request) -> web.Response:
        from cwm.envs.dataset import load

        fields = await self._multipart(request)
        if "dataset" not in fields:
            raise web.HTTPBadRequest(text="multipart field 'dataset' (a cwm-dataset .npz) is required")
        if "description" not in fields:
            raise web.HTTPBadRequest(text="multipart field 'description' is required for an uploaded dataset: "
                                          "describe the state, action, reward and episode end")
        description = _description(_text(fields, "description"))
        name = _name(_text(fields, "name") or "uploaded")
        gym_id = _text(fields, "gym_id") or None
        if gym_id is not None:  # planning and docs use it: an unknown id would fail only later, in a run
            from cwm.envs.registry import resolve_gym_id

            await asyncio.to_thread(resolve_gym_id, gym_id)
        env_id = _new_id(name, "uploaded")
        env_dir = self.cfg.data / "envs" / env_id
        env_dir.mkdir(parents=True, exist_ok=True)
        path = env_dir / "dataset.npz"
        path.write_bytes(fields["dataset"])
        try:
            ds = await asyncio.to_thread(load, path)  # allow_pickle=False, shape and dtype checks
        except CwmError as exc:
            shutil.rmtree(env_dir, ignore_errors=True)  # a fresh directory: nothing else of value in it
            raise web.HTTPBadRequest(text="the uploaded dataset is not a valid cwm-dataset: "
                                          + str(exc).replace(f"'{path}'", "(the upload)")) from exc
        rec = EnvRecord(env_id, gym_id, {}, "ready", str(path), _write_description(env_dir, description),
                        transitions=len(ds))
        self.store.put_env(rec)
        return web.json_response(rec.to_json(), status=201)

    async def post_transitions(self, request: web.Request) -> web.Response:
        """Append newly recorded transitions, then re-check the env's latest finished run on the grown data.

        Training transitions join the env's dataset (new trajectories); held-out ones go to a separate
        file that no search ever sees. Every node of the latest finished run is re-scored on the grown
        training data (scoring is cheap), and the response says whether its best program still holds.
        """
        env = self._env(request.match_info["id"])
        if env.status != "ready" or env.dataset is None:
            raise web.HTTPConflict(text=f"environment {env.id!r} is {env.status}; it has no data to extend yet")
        if not request.content_type.startswith("multipart/"):
            raise web.HTTPBadRequest(text="send multipart/form-data with field 'dataset' (a cwm-dataset .npz) "
                                          "and optionally 'heldout' (true or false)")
        fields = await self._multipart(request)
        if "dataset" not in fields:
            raise web.HTTPBadRequest(text="multipart field 'dataset' (a cwm-dataset .npz) is required")
        try:
            repair_budget = int(fields.get("repair_budget", b"5").decode().strip())
        except ValueError:
            repair_budget = -1
        if not 0 <= repair_budget <= 100:
            raise web.HTTPBadRequest(text="'repair_budget' must be an integer in 0..100 (0: re-check only)")
        heldout_text = (_text(fields, "heldout") or "false").strip().lower()
        if heldout_text not in ("true", "false"):
            raise web.HTTPBadRequest(text="'heldout' must be true or false")
        # one append at a time per environment: each reads the dataset, grows it and writes it back, so two
        # at once would each write base + own and lose the other's transitions
        async with self._env_locks.setdefault(env.id, asyncio.Lock()):
            return await self._extend(env.id, fields["dataset"], heldout_text == "true", repair_budget)

    async def _extend(self, env_id: str, upload_bytes: bytes, heldout: bool, repair_budget: int) -> web.Response:
        from cwm.envs.dataset import load

        env = self._env(env_id)  # read again under the lock: an earlier append may have moved the dataset
        if env.dataset is None:
            raise web.HTTPConflict(text=f"environment {env.id!r} is {env.status}; it has no data to extend yet")
        env_dir = self.cfg.data / "envs" / env.id
        env_dir.mkdir(parents=True, exist_ok=True)
        upload = env_dir / f".upload-{uuid.uuid4().hex[:8]}.npz"
        upload.write_bytes(upload_bytes)
        try:
            new = await asyncio.to_thread(load, upload)
        except CwmError as exc:
            raise web.HTTPBadRequest(text="the uploaded transitions are not a valid cwm-dataset: "
                                          + str(exc).replace(f"'{upload}'", "(the upload)")) from exc
        finally:
            upload.unlink(missing_ok=True)
        base = await asyncio.to_thread(load, env.dataset)
        mismatch = _incompatible(base, new)
        if mismatch:
            raise web.HTTPBadRequest(text=f"the uploaded transitions do not fit environment {env.id!r}: {mismatch}")
        if heldout:
            target = env_dir / "heldout.npz"
            existing = await asyncio.to_thread(load, target) if target.exists() else None
            merged = _append(existing, new) if existing is not None else new
            await asyncio.to_thread(merged.save, target)
            # held-out data never steers a search (no re-scoring of nodes, no repair), but the operator
            # still learns whether the latest model predicts it: best program on the new and on all of it
            # ("recheck" stays null: nothing of the search was re-scored; "heldout_check" is the score)
            check = await self._recheck(env.id, merged, new, will_repair=False, rescore=False)
            return web.json_response({"env": env.id, "appended": len(new), "heldout": True,
                                      "heldout_transitions": len(merged), "recheck": None,
                                      "heldout_check": check})
        grown = _append(base, new)
        path = env_dir / "dataset.npz"  # never the bundled file: that stays as shipped
        await asyncio.to_thread(grown.save, path)
        env.dataset, env.transitions = str(path), len(grown)
        self.store.put_env(env)
        recheck = await self._recheck(env.id, grown, new, will_repair=repair_budget > 0)
        repair = None
        if recheck is not None and not recheck["best_holds"] and repair_budget > 0:
            done = await self.runs.repair(recheck["run"], str(path), repair_budget)
            recheck["nodes"], recheck["best_node_now"] = done["nodes"], done["best_node"]  # on the feedback set
            repair = {"run": recheck["run"], "status": "queued", "budget": done["budget"],
                      "best_now": done["best_now"]}
        return web.json_response({"env": env.id, "appended": len(new), "heldout": False,
                                  "transitions": len(grown), "recheck": recheck, "repair": repair})

    async def _recheck(self, env_id: str, grown: Any, new: Any, will_repair: bool,
                       rescore: bool = True) -> dict[str, Any] | None:
        """The latest finished run's best program on the new transitions, and every node re-scored on the
        grown data; skipped when the best fails and a repair follows (the repair re-scores every node)."""
        from cwm.sandbox import Sandbox, SandboxConfig, evaluate

        done = [r for r in self.store.list_runs("done") if r.env == env_id]
        if not done:
            return None
        run = done[-1]
        tree_path = Path(run.run_dir) / "tree.json"
        best_path = Path(run.run_dir) / "best_program.py"
        if not tree_path.exists() or not best_path.exists():
            return None
        nodes = json.loads(tree_path.read_text(encoding="utf-8")).get("nodes", [])
        best = best_path.read_text(encoding="utf-8")
        rescored = []
        async with Sandbox(SandboxConfig(allow_import=tuple(run.request.get("allow_import", [])))) as sandbox:
            on_new = await evaluate(sandbox, best, new, max_failures=3)
            on_all = await evaluate(sandbox, best, grown, max_failures=0)
            self.evaluations += 2
            for n in nodes if rescore and (on_new.passed or not will_repair) else []:
                if n.get("program") and n.get("duplicate_of") is None:
                    r = await evaluate(sandbox, n["program"], grown, max_failures=0)
                    self.evaluations += 1
                    rescored.append({"node": n["id"], "before": n.get("score"), "accuracy": r.accuracy})
        top = max(rescored, key=lambda x: (x["accuracy"], -x["node"]), default=None)
        return {"run": run.id, "best_accuracy_new": on_new.accuracy, "best_accuracy_all": on_all.accuracy,
                "best_holds": on_new.passed, "failures": on_new.failures, "nodes": rescored,
                "best_node_now": top["node"] if top else None}

    async def _multipart(self, request: web.Request) -> dict[str, bytes]:
        fields: dict[str, bytes] = {}
        limit = self.cfg.max_upload_mb * 1024 * 1024
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                data = bytearray()
                while chunk := await part.read_chunk():
                    data += chunk
                    if len(data) > limit:
                        raise web.HTTPRequestEntityTooLarge(
                            limit, len(data), text=f"field {part.name!r} is over {self.cfg.max_upload_mb} MB, "
                                                   "this server's upload limit; send smaller files")
                fields[part.name] = bytes(data)
        except (ValueError, AssertionError, KeyError, HttpProcessingError) as exc:  # a malformed body
            detail = " ".join(str(exc).split())
            raise web.HTTPBadRequest(text=f"the multipart/form-data body is malformed ({type(exc).__name__}: "
                                          f"{detail}); send it with a client's form encoder (curl -F)") from exc
        return fields

    async def list_envs(self, request: web.Request) -> web.Response:
        return web.json_response({"envs": [e.to_json() for e in self.store.list_envs()]})

    async def get_env(self, request: web.Request) -> web.Response:
        return web.json_response(self._env(request.match_info["id"]).to_json())

    # ---------- runs
    async def post_run(self, request: web.Request) -> web.Response:
        body = await self._fields(request, _RUN_FIELDS)
        env = self._env_of(body)
        if env.status != "ready":
            raise web.HTTPConflict(text=f"environment {env.id!r} is {env.status}; runs need status ready")
        llm = body.get("llm", self.cfg.default_llm)
        if not isinstance(llm, str) or not llm:
            raise web.HTTPBadRequest(text="'llm' must be a provider string such as 'openai:gpt-4o'")
        refusal = self.cfg.llm_refusal(llm)
        if refusal is not None:
            raise web.HTTPForbidden(text=refusal)
        method = body.get("method", "gif-mcts")
        from cwm.graph.search import METHODS

        if not isinstance(method, str) or method not in METHODS:
            raise web.HTTPBadRequest(text=f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        plan = body.get("plan", False)
        if plan is not False and (isinstance(plan, bool) or not isinstance(plan, int) or not
                                  1 <= plan <= self.cfg.max_plan_episodes):
            raise web.HTTPBadRequest(text=f"'plan' must be false or a number of episodes in "
                                          f"1..{self.cfg.max_plan_episodes}")
        if plan and env.gym_id is None:
            raise web.HTTPBadRequest(text="'plan' needs an environment registered by gym_id: an uploaded "
                                          "dataset has no simulator to act in")
        describe = body.get("describe", "docs+facts")
        if describe not in ("docs+facts", "docs"):
            raise web.HTTPBadRequest(text="'describe' must be 'docs+facts' (default) or 'docs' (the paper's prompts)")
        allow_import = body.get("allow_import", [])
        if not isinstance(allow_import, list) or not all(
                isinstance(m, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", m)
                for m in allow_import):
            raise web.HTTPBadRequest(text="'allow_import' must be a list of module names, e.g. [\"mujoco\"]")
        nodes = body.get("nodes", [])
        from cwm.nodes.registry import registered_nodes

        known = registered_nodes()
        # registered names only: a request naming MODULE:ATTR would make the server import code of its choosing
        if not isinstance(nodes, list) or not all(isinstance(n, str) and n in known for n in nodes):
            raise web.HTTPBadRequest(text=f"'nodes' must be a list of registered node types ({', '.join(known)})")
        if nodes and method == "gif-mcts-paper":
            raise web.HTTPBadRequest(text="'nodes' needs a method other than gif-mcts-paper (it keeps generate, "
                                          "improve and fix only)")
        req = RunRequest(env=env.id, llm=llm, budget=_int(body, "budget", 10, 1, 500), method=str(method),
                         concurrency=_int(body, "concurrency", 1, 1, 32), plan=int(plan or 0),
                         seed=_int(body, "seed", 0, 0, 2**31 - 1), describe=describe,
                         allow_import=tuple(allow_import), nodes=tuple(nodes))
        rec = self.runs.submit(req, env)
        return web.json_response({"id": rec.id, "status": rec.status}, status=202)

    async def list_runs(self, request: web.Request) -> web.Response:
        return web.json_response({"runs": [r.to_json() for r in self.store.list_runs()]})

    async def get_run(self, request: web.Request) -> web.Response:
        return web.json_response(self._run(request.match_info["id"]).to_json())

    async def get_program(self, request: web.Request) -> web.Response:
        rec = self._run(request.match_info["id"])
        path = Path(rec.run_dir) / "best_program.py"
        if not path.exists():
            raise web.HTTPNotFound(text=f"run {rec.id} has no program yet (status {rec.status})")
        return web.Response(text=path.read_text(encoding="utf-8"), content_type="text/x-python")

    async def get_tree(self, request: web.Request) -> web.Response:
        rec = self._run(request.match_info["id"])
        path = Path(rec.run_dir) / "tree.json"
        if not path.exists():
            return web.json_response({"nodes": []})
        return web.Response(text=path.read_text(encoding="utf-8"), content_type="application/json")

    async def delete_run(self, request: web.Request) -> web.Response:
        rec = self.runs.cancel(request.match_info["id"])
        if rec is None:
            raise web.HTTPNotFound(text=f"no run {request.match_info['id']!r}")
        if rec.status in ("done", "failed"):
            raise web.HTTPConflict(text=f"run {rec.id!r} already finished ({rec.status}); there is nothing to "
                                        "cancel")
        return web.json_response({"id": rec.id, "status": rec.status})

    async def run_events(self, request: web.Request) -> web.StreamResponse:
        rec = self._run(request.match_info["id"])
        try:
            after = parse_last_event_id(request.headers.get("Last-Event-ID") or
                                        request.query.get("last_event_id"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}; send the id of the last event received, or none to start "
                                          "from the run's first event") from exc
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        run_id = rec.id

        def finished() -> bool:
            if self.stopping:  # the server drains: send what is written, then let the client reconnect
                return True
            current = self.store.get_run(run_id)
            return current is None or current.status in FINISHED

        trace = Path(rec.run_dir) / "trace.jsonl"
        try:
            async for line_no, data in trace_events(trace, after, finished):
                await resp.write(format_sse(line_no, data))
            if not self.stopping:  # no "end" on a shutdown: EventSource reconnects with Last-Event-ID
                final = self.store.get_run(run_id)
                await resp.write(end_event(final.status if final else "unknown"))
            await resp.write_eof()
        except ConnectionResetError:  # the reader left (closed its tab); it resumes with Last-Event-ID
            pass
        return resp

    # ---------- one-shot tools
    async def post_check(self, request: web.Request) -> web.Response:
        body = await self._fields(request, frozenset({"env", "program", "max_failures"}))
        env = self._env_of(body)
        program = _program(body)
        from cwm.envs.dataset import load
        from cwm.sandbox import check_program

        if env.dataset is None:
            raise web.HTTPConflict(text=f"environment {env.id!r} is {env.status}; it has no data yet")
        ds = await asyncio.to_thread(load, env.dataset)
        report = await check_program(program, ds, max_failures=_int(body, "max_failures", 5, 0, 100))
        self.evaluations += 1
        return web.json_response(report.to_json())

    async def post_plan(self, request: web.Request) -> web.Response:
        body = await self._fields(request, frozenset({"env", "program", "run", "episodes", "seed"}))
        env = self._env_of(body)
        if env.gym_id is None:
            raise web.HTTPBadRequest(text="planning needs an environment registered by gym_id")
        if ("run" in body) == ("program" in body):
            raise web.HTTPBadRequest(text="send either 'program' (Python source) or 'run' (a run id), not both "
                                          "and not neither")
        if "run" in body:
            if not isinstance(body["run"], str):
                raise web.HTTPBadRequest(text="'run' must be a run id (a string)")
            run = self._run(body["run"])
            if run.env != env.id:
                raise web.HTTPBadRequest(text=f"run {run.id!r} learned environment {run.env!r}, not {env.id!r}")
            run_path = Path(run.run_dir) / "best_program.py"
            if not run_path.exists():
                raise web.HTTPConflict(text=f"run {run.id!r} has no program yet (status {run.status})")
            program = run_path.read_text(encoding="utf-8")
        else:
            program = _program(body)
        from cwm.planning.agent import PlanConfig, plan
        from cwm.planning.models import ModelFailed

        cfg = PlanConfig(env=env.gym_id, model="program",
                         episodes=_int(body, "episodes", 3, 1, self.cfg.max_plan_episodes),
                         seed=_int(body, "seed", 0, 0, 2**31 - 1), env_kwargs=dict(env.env_kwargs))
        try:
            # a planner step has no per-step deadline in the sandbox (only an hour of CPU), so a program that
            # loops would pin a core and this request for that long: the request has a deadline of its own
            result = await asyncio.wait_for(plan(cfg, code=program), timeout=self.cfg.plan_timeout_s)
        except TimeoutError:
            return web.json_response({"error": f"planning did not finish within {self.cfg.plan_timeout_s:g} s; "
                                               "the program may loop on states outside the recorded data",
                                      "hint": "fewer 'episodes', or fix the program (POST /v1/check)"},
                                     status=422)
        except ModelFailed as exc:  # the program, not the request, broke: say how, like /v1/check's report
            return web.json_response({"error": f"the program failed while planning: {exc}",
                                      "hint": "score it with POST /v1/check to see the failing transitions",
                                      "program_error": exc.error.to_json()}, status=422)
        return web.json_response(result)

    # ---------- operations
    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def metrics(self, request: web.Request) -> web.Response:
        counts = self.store.count_runs()
        calls = tokens = searched = 0
        cost = 0.0
        for rec in self.store.list_runs():
            s = rec.summary or {}
            # a final summary replaces the whole dict; "progress" is there while a segment runs and stays on
            # a run cancelled or failed mid-segment, whose calls were paid all the same (counters never drop)
            p = s.get("progress", s)
            calls += int(p.get("llm_calls", p.get("calls", 0)) or 0)
            tokens += int(p.get("tokens", 0) or 0)
            cost += float(p.get("cost_usd", 0.0) or 0.0)
            searched += int(s.get("nodes", 0) or 0)
        lines = ["# HELP cwm_runs Runs by state.", "# TYPE cwm_runs gauge"]
        lines += [f'cwm_runs{{state="{k}"}} {v}' for k, v in counts.items()]
        lines += ["# HELP cwm_queue_depth Runs waiting for a slot.", "# TYPE cwm_queue_depth gauge",
                  f"cwm_queue_depth {counts['queued']}",
                  "# HELP cwm_llm_calls_total Paid LLM calls of all runs.", "# TYPE cwm_llm_calls_total counter",
                  f"cwm_llm_calls_total {calls}",
                  "# HELP cwm_llm_tokens_total LLM tokens of all runs.", "# TYPE cwm_llm_tokens_total counter",
                  f"cwm_llm_tokens_total {tokens}",
                  "# HELP cwm_llm_cost_usd_total LLM cost of all runs.", "# TYPE cwm_llm_cost_usd_total counter",
                  f"cwm_llm_cost_usd_total {cost:.6f}",
                  "# HELP cwm_evaluations_total Programs scored in the sandbox: by finished search segments "
                  "(nodes), and by this server process for /v1/check and re-checks.",
                  "# TYPE cwm_evaluations_total counter",
                  f'cwm_evaluations_total{{source="search"}} {searched}',
                  f'cwm_evaluations_total{{source="service"}} {self.evaluations}',
                  "# HELP cwm_http_requests_total Requests served.", "# TYPE cwm_http_requests_total counter",
                  f"cwm_http_requests_total {self.requests}",
                  "# HELP cwm_envs Registered environments.", "# TYPE cwm_envs gauge",
                  f"cwm_envs {len(self.store.list_envs())}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(__version__))

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(_static() / "index.html")

    async def static_file(self, request: web.Request) -> web.FileResponse:
        """The page's files; a missing one is a JSON 404 like every other error (aiohttp's static route
        answers an empty body)."""
        name = request.match_info["name"]
        path = _static() / name
        if name.startswith(".") or "/" in name or "\\" in name or not path.is_file():
            raise web.HTTPNotFound(text=f"no static file {name!r}")
        return web.FileResponse(path)

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        return await handler(request)

    # ---------- lifecycle
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_upload_mb * 1024 * 1024 + 65536,
                              middlewares=[self._count, _errors, _auth(self.cfg.token)])
        app.add_routes([
            web.get("/", self.index),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
            web.get("/openapi.json", self.openapi),
            web.post("/v1/envs", self.post_env),
            web.get("/v1/envs", self.list_envs),
            web.get("/v1/envs/{id}", self.get_env),
            web.post("/v1/envs/{id}/transitions", self.post_transitions),
            web.post("/v1/runs", self.post_run),
            web.get("/v1/runs", self.list_runs),
            web.get("/v1/runs/{id}", self.get_run),
            web.delete("/v1/runs/{id}", self.delete_run),
            web.get("/v1/runs/{id}/program", self.get_program),
            web.get("/v1/runs/{id}/tree", self.get_tree),
            web.get("/v1/runs/{id}/events", self.run_events),
            web.post("/v1/check", self.post_check),
            web.post("/v1/plan", self.post_plan),
        ])
        app.router.add_get("/static/{name}", self.static_file)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        n = self.runs.recover()
        if n:
            log.info("service.recovered_runs", runs=n)
        for env in self.store.list_envs():  # a collection cut by a restart is started again
            if env.status == "collecting":
                env.status, env.error = "failed", "the server stopped during collection; register it again"
                self.store.put_env(env)

    async def _shutdown(self, app: web.Application) -> None:
        """Runs before aiohttp waits for open requests: event streams end now (instead of holding the stop
        for the whole shutdown timeout) and running searches stop at their checkpoint."""
        self.stopping = True
        await self.runs.drain()
        for t in list(self._collections):
            t.cancel()

    async def _cleanup(self, app: web.Application) -> None:
        """After every request handler has returned: only now may the store close under them."""
        await self.runs.close()
        self.store.close()


def _incompatible(base: Any, new: Any) -> str | None:
    if (base.state_kind, base.action_kind) != (new.state_kind, new.action_kind):
        return f"state/action kinds {new.state_kind}/{new.action_kind}, expected {base.state_kind}/{base.action_kind}"
    for name in ("state", "action"):
        a, b = getattr(base, name), getattr(new, name)
        if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
            return f"{name} is {b.dtype}{list(b.shape[1:])}, expected {a.dtype}{list(a.shape[1:])}"
    return None


def _append(base: Any, new: Any) -> Any:
    """``base`` followed by ``new``, whose trajectories are renumbered after ``base``'s."""
    from cwm.envs.dataset import Dataset

    offset = int(base.trajectory.max()) + 1 if len(base) else 0
    cat = np.concatenate
    return Dataset(env_id=base.env_id, state=cat([base.state, new.state]), action=cat([base.action, new.action]),
                   next_state=cat([base.next_state, new.next_state]), reward=cat([base.reward, new.reward]),
                   terminated=cat([base.terminated, new.terminated]), truncated=cat([base.truncated, new.truncated]),
                   trajectory=cat([base.trajectory, new.trajectory + offset]).astype(np.int32),
                   step=cat([base.step, new.step]), state_kind=base.state_kind, action_kind=base.action_kind,
                   meta=dict(base.meta), consistent=cat([base.consistent, new.consistent]),
                   ceiling_credit=cat([base.ceiling_credit, new.ceiling_credit]))


def _static() -> Path:
    return Path(str(resources.files("cwm.service") / "static"))


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"'{key}' must be an integer in {lo}..{hi} (got {value!r})")
    return value


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise web.HTTPBadRequest(text="'description' must be non-empty text")
    if len(value) > MAX_DESCRIPTION:
        raise web.HTTPRequestEntityTooLarge(MAX_DESCRIPTION, len(value), text=(
            f"'description' has {len(value)} characters; at most {MAX_DESCRIPTION} are accepted"))
    return value


def _write_description(env_dir: Path, description: str | None) -> str | None:
    if description is None:
        return None
    path = env_dir / "description.md"
    path.write_text(description, encoding="utf-8")
    return str(path)


def _program(body: dict[str, Any]) -> str:
    program = body.get("program")
    if not isinstance(program, str) or "class Environment" not in program:
        raise web.HTTPBadRequest(text="'program' must be Python source defining class Environment")
    if len(program) > MAX_PROGRAM:
        raise web.HTTPRequestEntityTooLarge(MAX_PROGRAM, len(program), text=(
            f"'program' has {len(program)} characters; at most {MAX_PROGRAM} are accepted"))
    return program


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise web.HTTPBadRequest(text="'name' must be 1-64 letters, digits, '_', '.' or '-', starting with a "
                                      "letter or digit")
    return value


def _text(fields: dict[str, bytes], name: str) -> str | None:
    """A multipart text field as UTF-8, or None when absent."""
    raw = fields.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise web.HTTPBadRequest(text=f"multipart field {name!r} is not UTF-8 text") from exc


def _new_id(name: Any, fallback: str) -> str:
    base = name if isinstance(name, str) and _ID.match(name) else re.sub(r"[^A-Za-z0-9_.-]", "-", fallback)[:40]
    return f"{base}-{uuid.uuid4().hex[:6]}"


def _collect_with_kwargs(collect: Any, gym_id: str, cfg: Any, kwargs: dict[str, Any]) -> Any:
    if kwargs:
        return collect(gym_id, cfg, progress=None, env_kwargs=kwargs)
    return collect(gym_id, cfg, progress=None)


def load_or_create_token(data: Path) -> tuple[str, bool]:
    """The server's bearer token (mode 0600 in the data directory); True when it was just created."""
    path = data / "token"
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    data.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")

