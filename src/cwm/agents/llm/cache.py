"""Content-addressed response cache and record/replay cassettes.

A call's key hashes everything that determines its answer: provider, API, model, base URL, messages,
sampling parameters and the sample index (so k samples of one prompt are k entries), and the tools
offered with ``tool_choice`` when there are any (a call without tools hashes exactly as it did before
tool calling existed, so older caches and cassettes stay valid). The API key is not part of it. A
resumed or repeated run finds the responses it already paid for; a cassette turns a run's calls into one
JSON-lines file that replays the run without any server.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import structlog

from cwm.agents.llm.spec import ProviderSpec
from cwm.agents.llm.types import LLMError, Message, SamplingParams, ToolSpec

log = structlog.get_logger("cwm.llm")
KEY_VERSION = 1


def call_key(spec: ProviderSpec, messages: list[Message], params: SamplingParams, sample_index: int,
             tools: Sequence[ToolSpec] = (), tool_choice: str = "auto") -> str:
    fields: dict[str, Any] = {
        "v": KEY_VERSION, "provider": spec.name, "api": spec.api, "model": spec.model, "base_url": spec.base_url,
        "messages": [m.to_json() for m in messages], "params": params.to_json(), "sample": sample_index,
    }
    if tools:  # absent, not empty, without tools: the keys of plain calls must not move
        fields["tools"] = [t.to_json() for t in tools]
        fields["tool_choice"] = tool_choice
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_root() -> Path:
    """cwm's cache directory: $CWM_CACHE_DIR, else $XDG_CACHE_HOME/cwm, else ~/.cache/cwm."""
    root = os.environ.get("CWM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cwm")
    return Path(root)


def default_cache_dir() -> Path:
    return cache_root() / "llm"


class ResponseCache:
    """One JSON file per call under ``dir/ab/abcdef….json``, written atomically."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.dir = Path(directory) if directory is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("llm.cache_unreadable", path=str(path), error=str(exc))
            return None
        return data if isinstance(data, dict) and "text" in data else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False)
        os.replace(tmp, path)


class Cassette:
    """``record`` appends every call and its response to a JSON-lines file; ``replay`` answers from it and
    fails loudly on a call it never saw."""

    def __init__(self, path: str | Path, mode: Literal["record", "replay"]) -> None:
        self.path = Path(path)
        self.mode = mode
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        if mode == "replay":
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise LLMError(f"cannot read cassette {str(self.path)!r}: {exc}") from exc
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self._entries[str(entry["key"])] = dict(entry["response"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise LLMError(f"cassette {str(self.path)!r} line {n} is malformed: {exc}") from exc
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: str, what: str) -> dict[str, Any]:
        try:
            return self._entries[key]
        except KeyError:
            raise LLMError(f"cassette {str(self.path)!r} has no recorded response for {what}",
                           hint="the prompts or parameters changed since recording; record it again") from None

    def record(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        line = json.dumps({"key": key, "request": request, "response": response}, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        self._entries[key] = response
