"""A Code World Model as a ``gymnasium.Env``, for model-based RL: the program runs in the sandbox.

Gymnasium's API is synchronous and the sandbox client is asynchronous, so the environment owns a private
event loop on a daemon thread and every ``step`` is one round trip to the program's sandboxed process (the
same warm child for the whole life of the environment). The real environment is used only for what a
model cannot know: the spaces and the initial states of ``reset`` (sampled by the real env with the
given seed). Everything after ``reset`` is the model's own prediction.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np

from cwm.errors import CwmError
from cwm.sandbox.worker import Limits, ProgramError, ProgramSession, Sandbox, SandboxConfig, SessionFailed

T = TypeVar("T")


class ModelError(RuntimeError):
    """The Code World Model failed to load or to step (its kind, message and traceback are kept)."""

    def __init__(self, error: ProgramError) -> None:
        super().__init__(f"the Code World Model failed ({error.kind}): {error.message}")
        self.error = error


class CodeWorldModelEnv(gym.Env[Any, Any]):
    """``step`` asks the sandboxed program; ``reset`` takes an initial state from the real environment."""

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's class-level convention

    def __init__(self, program: str, env: str, *, env_kwargs: dict[str, Any] | None = None,
                 sandbox: SandboxConfig | None = None, step_timeout_s: float = 10.0) -> None:
        from cwm.envs.registry import make_env
        from cwm.planning.agent import env_io_spec

        self._real: Any = make_env(env, **(env_kwargs or {}))
        self.observation_space = self._real.observation_space
        self.action_space = self._real.action_space
        self._io, _ = env_io_spec(self._real)
        self._obs_dtype = np.dtype(self._io.state_dtype)
        self._state_kind = self._io.state_kind
        self._timeout = step_timeout_s
        self._state: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cwm-model-env", daemon=True)
        self._thread.start()
        self._sandbox = Sandbox(sandbox or SandboxConfig(limits=Limits()))
        self._session: ProgramSession | None = None
        try:
            self._session = self._run(self._open(program))
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open(self, program: str) -> ProgramSession:
        session, loaded = await self._sandbox.load(program, self._io)
        if not loaded.ok:
            assert loaded.error is not None
            raise ModelError(loaded.error)
        return session

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self._real.reset(seed=seed, options=options)
        self._state = obs
        return obs, dict(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._session is None:
            raise gym.error.ClosedEnvironmentError("the environment is closed")
        item = (np.asarray(self._state).tolist(), np.asarray(action).tolist())
        try:
            answers = self._run(self._session.step_many([item], timeout=self._timeout))
        except SessionFailed as exc:
            raise ModelError(exc.error) from exc
        out = answers[0]
        err = out.get("error")
        if isinstance(err, dict):
            raise ModelError(ProgramError(str(err.get("kind", "runtime")), str(err.get("message", ""))[:2000],
                                          err.get("traceback") if isinstance(err.get("traceback"), str) else None))
        self._state = self._decode(out["s"], out["shape"])
        return self._state, float(out["r"]), bool(out["d"]), False, {}

    def _decode(self, flat: list[float], shape: list[int]) -> Any:
        arr = np.asarray(flat, dtype=np.float64).reshape(shape)
        if self._state_kind == "int":
            return round(float(arr.reshape(-1)[0]))
        if self._state_kind == "tuple":
            return tuple(round(float(v)) for v in arr.reshape(-1))
        return arr.astype(self._obs_dtype)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        session, self._session = self._session, None
        try:
            if session is not None:
                self._run(session.close())
            self._run(self._sandbox.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._real.close()


def as_env(program: str | Path, env: str, *, env_kwargs: dict[str, Any] | None = None,
           sandbox: SandboxConfig | None = None, max_episode_steps: int | None = None) -> gym.Env[Any, Any]:
    """``program`` (source text, or a path to a ``.py`` file) as a gymnasium environment shaped like ``env``.

    Episodes are cut at the real environment's time limit unless ``max_episode_steps`` says otherwise.
    Close it when done: it holds a sandboxed process.
    """
    code = program
    if isinstance(program, Path) or (isinstance(program, str) and program.endswith(".py")
                                     and "\n" not in program):
        try:
            code = Path(program).read_text(encoding="utf-8")
        except OSError as exc:
            raise CwmError(f"cannot read program {str(program)!r}: {exc}") from exc
    inner = CodeWorldModelEnv(str(code), env, env_kwargs=env_kwargs, sandbox=sandbox)
    spec = getattr(inner._real, "spec", None)
    limit = max_episode_steps or (spec.max_episode_steps if spec is not None else None)
    return gym.wrappers.TimeLimit(inner, limit) if limit else inner
