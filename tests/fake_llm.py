"""Run the scripted loopback LLM server in a thread, for tests that drive the CLI or a subprocess."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cwm.agents.llm.fake_server import Action, FakeLLMServer, Reply, Rules

CARTPOLE = (Path(__file__).resolve().parents[1] / "examples" / "cartpole_cwm.py").read_text(encoding="utf-8")
VARIANTS = {
    "good": CARTPOLE,
    "wrong_reward": CARTPOLE.replace("return self.state, 1.0, done", "return self.state, 0.5, done"),
    "never_done": CARTPOLE.replace("return self.state, 1.0, done", "return self.state, 1.0, False"),
    "weak_force": CARTPOLE.replace("force_mag = 10.0", "force_mag = 9.0"),
    "name_error": CARTPOLE.replace("x, x_dot, theta, theta_dot = self.state",
                                   "x, x_dot, theta, theta_dot = self.stat"),
    "syntax_error": CARTPOLE.replace("def step(self, action):", "def step(self, action)"),
}


VARIANTS["terminal_reward"] = CARTPOLE.replace("return self.state, 1.0, done",
                                               "return self.state, 0.0 if done else 1.0, done")
"""Near perfect: right everywhere except the reward of the (few) terminal steps."""


def fenced(name: str, improve: bool = False) -> Reply:
    head = "## Error explanation\nSomething was off.\n## Correct code\n" if improve else ""
    return Reply(f"{head}```python\n{VARIANTS[name]}```")


def strong_model() -> Rules:
    """A capable model, scripted: every generate writes the same near-perfect program (wrong terminal
    reward); shown that whole program with a transition it gets wrong, it answers with the correct one."""
    return Rules([((VARIANTS["terminal_reward"].strip(), "gets wrong"), fenced("good", improve=True))],
                 default=fenced("terminal_reward"))


def weak_model() -> list[Action]:
    """A weaker model, scripted by call order whatever it is asked: a program that does not run, then one
    with wrong physics, then the correct one (and the correct one from then on)."""
    return [fenced("syntax_error"), fenced("weak_force"), fenced("good")]


@contextmanager
def serve_in_thread(server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield server
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(10)
