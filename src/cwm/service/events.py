"""Server-Sent Events from a run's trace file.

The trace (``trace.jsonl`` in the run directory) is already the durable, append-only record of every event
the run emitted, across resumes. Serving SSE from it, with the line number as the event id, makes replay
exact by construction: ``Last-Event-ID: n`` continues at line n + 1, so a reconnecting client sees no gap
and no duplicate, even across a server restart. Only complete lines are sent; a line being written is
picked up on the next poll.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path


def parse_last_event_id(header: str | None) -> int:
    """The last line the client has seen (0: none). A malformed id is refused (ValueError) rather than
    read as "from the start": a client that resent a garbled id would otherwise get every event twice."""
    if header is None or not header.strip():
        return 0
    text = header.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        raise ValueError(f"Last-Event-ID {header[:40]!r} is not an event id (a non-negative integer)")
    return int(text)


async def trace_events(path: Path, after: int, finished: Callable[[], bool],
                       poll_s: float = 0.1) -> AsyncIterator[tuple[int, str]]:
    """Yield ``(line_number, json_text)`` for every trace line after ``after``, following the file until
    ``finished()`` is true and everything written has been sent."""
    line_no = 0
    offset = 0
    pending = b""
    while True:
        done = finished()  # read before the file, so nothing written before "finished" is missed
        chunk = b""
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        if chunk:
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line_no += 1
                if line_no <= after or not raw.strip():
                    continue
                yield line_no, raw.decode("utf-8", errors="replace")
        elif done:
            return
        else:
            await asyncio.sleep(poll_s)


def format_sse(event_id: int, data: str, event: str | None = None) -> bytes:
    head = f"id: {event_id}\n" + (f"event: {event}\n" if event else "")
    body = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return (head + body + "\n").encode("utf-8")


def end_event(status: str) -> bytes:
    return b"event: end\ndata: " + json.dumps({"status": status}).encode() + b"\n\n"
