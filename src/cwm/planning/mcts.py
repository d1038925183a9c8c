"""MCTS for discrete actions (the paper's planner, App. L; official ``mcts.py``).

A fresh tree at every real step; ``simulations`` iterations, each descending by UCB
``Q + C sqrt(ln N / (n + eps))`` with unvisited actions valued ``default_q``, expanding one action with a
model step followed by a random rollout of up to ``max_actions`` steps (one sandbox message), and backing
up discounted returns. The real action is drawn from ``softmax(Q / temperature)`` over visited root actions.
Defaults are the official code's values (its UCB uses eps = 1e-3; the paper's table says 1).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from cwm.planning.models import PlanningModel


@dataclass(frozen=True)
class MCTSConfig:
    simulations: int = 25
    max_actions: int = 100
    ucb_c: float = 1.0
    eps: float = 1e-3
    discount: float = 0.99
    temperature: float = 0.01
    default_q: float = 1.0


@dataclass
class _Node:
    state: Any
    done: bool = False
    reward: float = 0.0
    n: int = 0
    w: float = 0.0
    children: dict[int, _Node] = field(default_factory=dict)

    @property
    def q(self) -> float:
        return self.w / self.n if self.n else 0.0


class MCTSPlanner:
    def __init__(self, n_actions: int, config: MCTSConfig | None = None, seed: int = 0) -> None:
        self.n_actions = n_actions
        self.config = config or MCTSConfig()
        self.rng = random.Random(seed)

    def reset(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _ucb(self, node: _Node, a: int) -> float:
        c = self.config
        child = node.children.get(a)
        log_n = math.log(node.n) if node.n > 0 else 0.0
        if child is None:
            return c.default_q + c.ucb_c * math.sqrt(log_n / c.eps)
        return child.q + c.ucb_c * math.sqrt(log_n / (child.n + c.eps))

    async def act(self, model: PlanningModel, state: Any, remaining: int) -> int:
        """The real action: a softmax over the visited root actions' mean returns after a fresh search."""
        c = self.config
        root = await self.search(model, state, remaining)
        visited = [(a, ch.q) for a, ch in root.children.items() if ch.n > 0]
        if not visited:
            return self.rng.randrange(self.n_actions)
        qmax = max(q for _, q in visited)
        weights = [math.exp((q - qmax) / c.temperature) for _, q in visited]
        return self.rng.choices([a for a, _ in visited], weights=weights)[0]

    async def search(self, model: PlanningModel, state: Any, remaining: int) -> _Node:
        """Run the simulations from ``state`` and return the tree's root (its statistics are what act reads)."""
        c = self.config
        root = _Node(state)
        for _ in range(c.simulations):
            node, path = root, [root]
            value = 0.0
            while True:
                if node.done:
                    break
                scores = [self._ucb(node, a) for a in range(self.n_actions)]
                top = max(scores)
                a = self.rng.choice([i for i, s in enumerate(scores) if s == top])
                child = node.children.get(a)
                if child is None:
                    nxt, r, d, v = await model.simulate(node.state, a, min(c.max_actions, remaining), c.discount,
                                                        self.rng.randrange(2**31))
                    child = _Node(nxt, d, r)
                    node.children[a] = child
                    path.append(child)
                    value = 0.0 if d else v
                    break
                node = child
                path.append(node)
            for nd in reversed(path[1:]):
                value = nd.reward + c.discount * value
                nd.n += 1
                nd.w += value
            root.n += 1
        return root
