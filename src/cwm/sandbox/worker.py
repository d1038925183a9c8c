"""The evaluator's side of the sandbox: start the fork-server, load programs, exchange steps.

``Sandbox`` owns one fork-server. ``Sandbox.open`` loads a program into a fresh child and returns a
``ProgramSession``, a persistent process that answers step requests until closed: the scorer uses it
for one pass over a dataset, the planner for hundreds of thousands of steps. Everything the child
says is parsed as JSON and validated by the caller; nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog

from cwm.errors import CwmError
from cwm.sandbox.layers import Isolation, LaunchPlan, Layer, describe_layers, plan_launch, zygote_source
from cwm.sandbox.policy import ImportPolicy, build_policy, describe_enforcement

log = structlog.get_logger("cwm.sandbox")

LINE_LIMIT = 16 << 20
MIN_MEMORY_MB = 64
"""Below this the child cannot even hold the fork-server's numpy mappings."""
_PASS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # correctness settings some CPUs need


@dataclass(frozen=True)
class Limits:
    """Resource limits for one program. The step-phase deadline scales with the transitions scored:
    ``base_s + per_transition_s * n``; loading (import, class body, ``__init__``) has ``load_s``."""

    memory_mb: int = 2048
    load_s: float = 10.0
    base_s: float = 2.0
    per_transition_s: float = 0.02
    transition_s: float = 1.0
    """Cooperative per-transition timer inside the child (a program that eats it still meets the deadline)."""
    cpu_s: int | None = None
    """CPU-seconds backstop; default: the load deadline plus one hour."""
    file_bytes: int = 1 << 20
    max_tasks: int = 0
    """RLIMIT_NPROC: 0 forbids threads and processes. An allowed library that registers a need for
    threads raises it for its sandbox (``policy.register_library``); with seccomp on, fork and exec stay
    denied whatever this is."""
    output_chars: int = 8192
    drop_uid: bool = True
    seccomp: bool = True

    def __post_init__(self) -> None:
        # a non-positive limit would silently remove it (RLIMIT_AS of -5 MiB means "unlimited")
        if self.memory_mb < MIN_MEMORY_MB:
            raise CwmError(f"--memory-mb must be at least {MIN_MEMORY_MB} (got {self.memory_mb})",
                           hint="the limit is the address space of one program, numpy included")
        for name in ("load_s", "base_s", "transition_s"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
                flag = "--load-timeout" if name == "load_s" else name
                raise CwmError(f"{flag} must be a positive number of seconds (got {val})")
        if self.per_transition_s < 0 or self.file_bytes < 0 or self.max_tasks < 0 or self.output_chars < 0:
            raise CwmError("sandbox limits must not be negative")
        if self.cpu_s is not None and self.cpu_s < 1:
            raise CwmError(f"the CPU-time limit must be at least 1 s (got {self.cpu_s})")

    def deadline(self, n: int) -> float:
        return self.base_s + self.per_transition_s * n

    def wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_s"] = self.cpu_s if self.cpu_s is not None else math.ceil(self.load_s) + 3600
        return d


@dataclass(frozen=True)
class IOSpec:
    """How inputs are rebuilt in the child: the types the environment itself produces."""

    state_kind: str = "array"
    state_dtype: str = "float64"
    action_kind: str = "int"
    action_dtype: str = "int64"


@dataclass
class ProgramError:
    """A whole-program failure, classified."""

    kind: str
    message: str
    traceback: str | None = None
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("kind", "message")}


_SIGNAL_KIND = {signal.SIGSEGV: "crash", signal.SIGBUS: "crash", signal.SIGABRT: "crash",
                signal.SIGFPE: "crash", signal.SIGILL: "crash", signal.SIGXCPU: "timeout",
                signal.SIGKILL: "memory"}


def classify_exit(status: dict[str, Any], *, when: str) -> ProgramError:
    """Turn a child's exit status into a classified error with a message a user can act on."""
    if "signal" in status:
        sig = int(status["signal"])
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        kind = _SIGNAL_KIND.get(signal.Signals(sig), "crash") if sig in signal.Signals._value2member_map_ \
            else "crash"
        why = {"timeout": "it used up its CPU-time limit", "memory": "it was killed, most likely out of memory",
               "crash": "it crashed"}[kind]
        return ProgramError(kind, f"the program's process died from {name} {when}: {why}")
    code = status.get("exit")
    return ProgramError("crash", f"the program's process exited with status {code} {when} "
                        "(programs must not exit; return from step instead)")


class SessionFailed(Exception):
    """The child stopped answering: died, timed out, or broke the protocol."""

    def __init__(self, error: ProgramError, answered: list[dict[str, Any]]) -> None:
        super().__init__(error.message)
        self.error = error
        self.answered = answered


@dataclass
class LoadResult:
    ok: bool
    error: ProgramError | None = None
    output: str = ""
    has_step_batch: bool = False
    elapsed_s: float = 0.0


class ProgramSession:
    """One loaded program in its own child process."""

    def __init__(self, sandbox: Sandbox, sid: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, limits: Limits) -> None:
        self._sandbox = sandbox
        self.sid = sid
        self._reader = reader
        self._writer = writer
        self.limits = limits
        self.closed = False
        self.exit_status: dict[str, Any] | None = None

    async def _line(self) -> dict[str, Any] | None:
        try:
            raw = await self._reader.readline()
        except (asyncio.LimitOverrunError, ValueError) as exc:
            raise SessionFailed(ProgramError("protocol", "the program wrote an oversized message to the "
                                             "sandbox's result channel"), []) from exc
        except (ConnectionError, OSError):
            return None
        if not raw:
            return None
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise SessionFailed(ProgramError("protocol", "the program wrote garbage to the sandbox's result "
                                             "channel"), []) from exc
        if not isinstance(msg, dict):
            raise SessionFailed(ProgramError("protocol", "the program wrote a non-object to the sandbox's "
                                             "result channel"), [])
        return msg

    async def _died(self, when: str, answered: list[dict[str, Any]]) -> SessionFailed:
        status = await self.close()
        return SessionFailed(classify_exit(status, when=when), answered)

    async def load(self) -> LoadResult:
        t0 = time.perf_counter()
        try:
            msg = await asyncio.wait_for(self._line(), self.limits.load_s)
        except TimeoutError:
            await self.close()
            return LoadResult(False, ProgramError("timeout", f"loading the program (module body and "
                              f"Environment()) took longer than {self.limits.load_s:g} s"),
                              elapsed_s=time.perf_counter() - t0)
        except SessionFailed as exc:
            await self.close()
            return LoadResult(False, exc.error, elapsed_s=time.perf_counter() - t0)
        if msg is None:
            exc2 = await self._died("while loading", [])
            return LoadResult(False, exc2.error, elapsed_s=time.perf_counter() - t0)
        output = str(msg.get("output", ""))[: self.limits.output_chars * 2]
        if msg.get("ok") is True:
            return LoadResult(True, None, output, bool(msg.get("step_batch")), time.perf_counter() - t0)
        err = msg.get("error") if isinstance(msg.get("error"), dict) else {}
        assert isinstance(err, dict)
        await self.close()
        kind = err.get("kind") if err.get("kind") in ("syntax", "import", "interface", "runtime", "memory",
                                                        "crash", "forbidden_import") else "protocol"
        return LoadResult(False, ProgramError(str(kind), str(err.get("message", ""))[:4000],
                                              _str_or_none(err.get("traceback"))), output,
                          elapsed_s=time.perf_counter() - t0)

    async def step_many(self, items: Sequence[tuple[Any, Any]], *, timeout: float) -> list[dict[str, Any]]:
        """Predictions for ``(state, action)`` items, in order; raises ``SessionFailed`` with the answers
        received so far if the child dies, breaks the protocol, or misses ``timeout``."""
        if self.closed:
            raise SessionFailed(ProgramError("crash", "the session is closed"), [])
        answered: list[dict[str, Any]] = []
        payload = json.dumps({"items": list(items)}).encode() + b"\n"
        try:
            self._writer.write(payload)
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + timeout):
                await self._writer.drain()
                while len(answered) < len(items):
                    msg = await self._line()
                    if msg is None:
                        raise await self._died(f"while computing item {len(answered)} of the request", answered)
                    _raise_fatal(msg, answered)
                    answered.append(msg)
        except TimeoutError:
            await self.close()
            raise SessionFailed(ProgramError("timeout", f"the program did not answer within {timeout:.3g} s "
                                             f"(stuck on item {len(answered)} of the request)"),
                                answered) from None
        except SessionFailed as exc:
            await self.close()
            exc.answered = answered
            raise
        except (ConnectionError, OSError):
            raise await self._died("while receiving a request", answered) from None
        return answered

    async def step_many_raw(self, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Send one planner request (``op`` other than step) and return its single, unvalidated reply."""
        if self.closed:
            raise SessionFailed(ProgramError("crash", "the session is closed"), [])
        try:
            self._writer.write(json.dumps(payload).encode() + b"\n")
            async with asyncio.timeout(timeout):
                await self._writer.drain()
                msg = await self._line()
        except TimeoutError:
            await self.close()
            raise SessionFailed(ProgramError("timeout", f"the program did not answer a planning request within "
                                             f"{timeout:.3g} s"), []) from None
        except SessionFailed:
            await self.close()
            raise
        except (ConnectionError, OSError):
            raise await self._died("during a planning request", []) from None
        if msg is None:
            raise await self._died("during a planning request", [])
        try:
            _raise_fatal(msg, [])
        except SessionFailed:
            await self.close()
            raise
        return msg

    async def close(self) -> dict[str, Any]:
        """Kill the child's process group, reap it and remove its scratch directory."""
        if self.closed:
            return self.exit_status or {}
        self.closed = True
        with contextlib.suppress(Exception):
            self._writer.close()
        self.exit_status = await self._sandbox._kill(self.sid)
        return self.exit_status


def _raise_fatal(msg: dict[str, Any], answered: list[dict[str, Any]]) -> None:
    """The child ends a session with one ``fatal`` record when the program reached for the environment."""
    fatal = msg.get("fatal")
    if isinstance(fatal, dict):
        raise SessionFailed(ProgramError("forbidden_import", str(fatal.get("message", ""))[:4000],
                                         _str_or_none(fatal.get("traceback"))), answered)


def _str_or_none(v: Any) -> str | None:
    return v[:8000] if isinstance(v, str) else None


@dataclass
class SandboxConfig:
    limits: Limits = field(default_factory=Limits)
    isolation: Isolation = "auto"
    hide: tuple[str, ...] = ()
    """Extra files or directories the program must not read (the dataset being scored, for one)."""
    preload: tuple[str, ...] = ()
    """Modules the fork-server imports once so that children start warm (numpy always). For trusted
    reference models only: a preloading sandbox enforces no import policy (the modules are in memory)."""
    allow_import: tuple[str, ...] = ()
    """Libraries candidates may import besides the standard library and numpy (``--allow-import``)."""


class Sandbox:
    """A warm fork-server inside the isolation layers; ``open`` gives each program its own child."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.layers: list[Layer] = []
        self.plan: LaunchPlan | None = None
        self.policy: ImportPolicy | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._ctrl: socket.socket | None = None
        self._ctrl_lock = asyncio.Lock()
        self._buf = b""
        self._ids = itertools.count(1)
        self._scratch: str | None = None

    async def __aenter__(self) -> Sandbox:
        try:
            await self.start()
        except BaseException:  # cancelled mid-start (a run cancelled early): no fork-server may outlive it
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _env(self) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMEXPR_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "MUJOCO_GL": "disable",
               "CWM_PRELOAD": ",".join(self.config.preload)}
        env.update({k: os.environ[k] for k in _PASS_ENV if k in os.environ})
        return env

    async def start(self) -> None:
        if self._proc is not None:
            return
        from cwm.envs.dataset import bundled_path

        env = self._env()
        policy = build_policy(tuple(self.config.allow_import), tuple(self.config.preload))
        if policy.enforced:
            env["CWM_POLICY"] = json.dumps(policy.wire())
        data_dir = bundled_path("CartPole-v1")
        hide = [*self.config.hide, *([str(data_dir.parent)] if data_dir else [])]
        plan = plan_launch(self.config.isolation, hide, [], env, policy)
        if plan.mode != "bwrap":
            self._scratch = tempfile.mkdtemp(prefix="cwm-sandbox-")
            os.chmod(self._scratch, 0o755)
            env["CWM_SCRATCH"] = self._scratch
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [*plan.prefix, sys.executable, "-I", "-B", "-c", zygote_source(), str(child.fileno())]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=(child.fileno(),), env=env, start_new_session=True)
        except OSError as exc:
            raise CwmError(f"cannot start the sandbox: {exc}") from exc
        finally:
            child.close()
        parent.setblocking(False)
        self._ctrl = parent
        self.plan = plan
        try:
            hello = await asyncio.wait_for(self._request({"op": "hello"}), 60)
        except (TimeoutError, ConnectionError, CwmError) as exc:
            err = b""
            if self._proc.stderr is not None:
                with contextlib.suppress(Exception):
                    err = await asyncio.wait_for(self._proc.stderr.read(4000), 1)
            await self.close()
            raise CwmError(f"the sandbox's fork-server did not start ({plan.mode}): "
                           f"{err.decode(errors='replace').strip()[-800:] or exc}",
                           hint="run `cwm doctor`, or try --isolation none to see if the layers are at fault") \
                from exc
        failed = hello.get("preload_errors") or {}
        if failed:
            await self.close()
            mod, why = next(iter(failed.items()))
            raise CwmError(f"--preload {mod}: the sandbox could not import it ({why})",
                           hint="preload only installed modules that a trusted reference model needs")
        lim = self.config.limits
        self.policy = policy
        self.layers = describe_layers(plan, hello, drop_uid=lim.drop_uid, seccomp=lim.seccomp, policy=policy)
        for layer in self.layers:
            if not layer.active:
                log.warning("sandbox layer inactive", layer=layer.name, detail=layer.detail, stops=layer.threat)

    def policy_text(self) -> str:
        """What candidates may import here and how that is enforced (for every report)."""
        if self.policy is None or self.plan is None:
            return "not started"
        return describe_enforcement(self.policy, self.plan.mode == "bwrap")

    def effective_limits(self, lim: Limits) -> Limits:
        """``lim`` with the threads an allowed library needs (never fewer than asked)."""
        if self.policy is not None and self.policy.threads > lim.max_tasks:
            return replace(lim, max_tasks=self.policy.threads)
        return lim

    async def _read_ctrl_line(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        assert self._ctrl is not None
        while b"\n" not in self._buf:
            chunk = await loop.sock_recv(self._ctrl, 65536)
            if not chunk:
                raise CwmError("the sandbox's fork-server exited unexpectedly",
                               hint="run `cwm doctor` to check the isolation layers")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        assert isinstance(reply, dict)
        return reply

    async def _request(self, req: dict[str, Any], fd: int | None = None) -> dict[str, Any]:
        if self._ctrl is None:
            raise CwmError("the sandbox is not running")
        data = json.dumps(req).encode() + b"\n"
        loop = asyncio.get_running_loop()
        async with self._ctrl_lock:
            if fd is not None:
                self._ctrl.setblocking(True)
                try:
                    socket.send_fds(self._ctrl, [data[:1]], [fd])
                finally:
                    self._ctrl.setblocking(False)
                data = data[1:]
            await loop.sock_sendall(self._ctrl, data)
            return await self._read_ctrl_line()

    async def open(self, code: str, io: IOSpec | None = None, limits: Limits | None = None) -> ProgramSession:
        """Start a child for ``code``; call ``load()`` on the result before stepping."""
        await self.start()
        lim = self.effective_limits(limits or self.config.limits)
        sid = str(next(self._ids))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        req = {"op": "spawn", "id": sid, "code": code, "limits": lim.wire(), **asdict(io or IOSpec())}
        try:
            try:
                await self._request(req, theirs.fileno())
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
        except BaseException:  # cancelled (a caller's deadline) or failed: the child's channel closes with us
            ours.close()
            raise
        return ProgramSession(self, sid, reader, writer, lim)

    async def load(self, code: str, io: IOSpec | None = None, limits: Limits | None = None
                   ) -> tuple[ProgramSession, LoadResult]:
        session = await self.open(code, io, limits)
        try:
            return session, await session.load()
        except BaseException:  # the caller never receives the session, so it cannot close it: close it here
            await session.close()
            raise

    async def _kill(self, sid: str) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._request({"op": "kill", "id": sid}), 30)
        except (TimeoutError, CwmError, OSError):
            await self.close()  # a fork-server that cannot reap is restarted on next use
            return {"status": "unknown"}

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        self._buf = b""
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            except asyncio.CancelledError:  # cancelled while closing: kill now rather than leave it running
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


@dataclass
class Diagnosis:
    """What ``cwm doctor`` reports: the launcher, each layer, the import policy, and any start failure."""

    launcher: str
    layers: list[Layer]
    policy: str
    error: str | None = None


async def diagnose(config: SandboxConfig) -> Diagnosis:
    """Start a sandbox and report its layers; a launcher that fails is reported, never raised."""
    sb = Sandbox(config)
    try:
        await sb.start()
        assert sb.plan is not None
        return Diagnosis(sb.plan.mode, sb.layers, sb.policy_text())
    except CwmError as exc:
        error = str(exc)
        plan = sb.plan or LaunchPlan("none", ())
        policy = build_policy(tuple(config.allow_import), tuple(config.preload))
        layers = [Layer("fork-server", False, f"did not start: {error}")]
        layers += [Layer(lyr.name, False, "not checked: the fork-server did not start")
                   for lyr in describe_layers(plan, {}, drop_uid=config.limits.drop_uid,
                                              seccomp=config.limits.seccomp, policy=policy)[1:]]
        return Diagnosis(plan.mode if sb.plan is not None else config.isolation, layers,
                         describe_enforcement(policy, plan.mode == "bwrap"), error)
    finally:
        await sb.close()
