"""One cap on LLM calls in flight for a whole Ray cluster (``cwm bench --executor ray --llm-concurrency N``).

A provider's rate limit is per account, not per machine, so a cap held by each task would let
``--parallel`` tasks exceed it together. The cap is one Ray actor per provider, created by the bench's
driver and handed to every task; a task asks it for a slot before each call and gives the slot back
after. A slot is a lease: one held by a task whose node died is reclaimed when the lease runs out (set
just above the bench's ``--timeout``, the longest a call may legitimately hold it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any


class CallSlots:
    """The actor's body (an async actor: ``ray.remote(CallSlots)``); leases of at most ``n`` slots."""

    def __init__(self, n: int, lease_s: float) -> None:
        self._n = n
        self._free: asyncio.Semaphore | None = None
        self._leases: dict[str, float] = {}
        self._lease_s = lease_s
        self._max_held = 0
        self._granted = 0

    def _sem(self) -> asyncio.Semaphore:
        if self._free is None:  # made in the actor's own event loop, on first use
            self._free = asyncio.Semaphore(self._n)
        return self._free

    def _reap(self) -> None:
        now = time.monotonic()
        for token, until in list(self._leases.items()):
            if until < now:
                del self._leases[token]
                self._sem().release()

    async def acquire(self) -> str:
        while True:
            self._reap()
            try:
                await asyncio.wait_for(self._sem().acquire(), timeout=min(5.0, self._lease_s))
                break
            except TimeoutError:
                continue  # look for expired leases, then wait again
        token = uuid.uuid4().hex
        self._leases[token] = time.monotonic() + self._lease_s
        self._granted += 1
        self._max_held = max(self._max_held, len(self._leases))
        return token

    async def release(self, token: str) -> None:
        if self._leases.pop(token, None) is not None:
            self._sem().release()

    async def stats(self) -> dict[str, int]:
        return {"slots": self._n, "held": len(self._leases), "max_held": self._max_held, "granted": self._granted}


class RaySlot:
    """A ``CallLimit`` that holds one of the actor's slots around each call of this process."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._tokens: dict[asyncio.Task[Any] | None, list[str]] = {}
        self._returns: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> None:
        ref = self._actor.acquire.remote()
        try:
            token = str(await ref)
        except asyncio.CancelledError:
            back = asyncio.ensure_future(self._give_back(ref))  # the slot may still be granted: return it then
            self._returns.add(back)
            back.add_done_callback(self._returns.discard)
            raise
        self._tokens.setdefault(asyncio.current_task(), []).append(token)

    async def __aexit__(self, *exc: object) -> None:
        task = asyncio.current_task()
        tokens = self._tokens.get(task, [])
        if tokens:
            token = tokens.pop()
            if not tokens:
                self._tokens.pop(task, None)
            self._actor.release.remote(token)  # submitted now; not awaited, so a cancellation cannot skip it

    async def _give_back(self, ref: Any) -> None:
        try:
            self._actor.release.remote(str(await ref))
        except Exception:  # the actor is gone: nothing left to give back
            return


def slots_actor(ray: Any, n: int, lease_s: float) -> Any:
    """A new slots actor on the connected cluster (it lives as long as the bench's driver)."""
    return ray.remote(num_cpus=0, max_concurrency=10_000)(CallSlots).remote(n, lease_s)
