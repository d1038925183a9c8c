"""Baseline controllers sharing GIF-MCTS's prompts, agents, client and sandbox, so comparisons are fair.

* ``WorldCoderSearch`` — the paper's WorldCoder* re-implementation (official ``world_coder_cwm.py``): one
  generated seed program, then refinements of a program chosen by Thompson sampling over
  Beta(1 + C r, 1 + C (1 - r)) priors (C = 5), with fix for buggy programs and improve otherwise; the
  parent's prior gains a success when the refinement is fully correct, a failure otherwise.
* ``BestOfN`` — N independent zero-shot generations from the description; the best one wins.

Both reuse ``Node``, ``Selection`` and ``ExpansionResult`` so the graph and the traces treat every
controller alike. A child whose program repeats an earlier one (up to layout and comments) takes that
node's score instead of being scored again and is marked ``duplicate_of``; the algorithms are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from cwm.agents.results import ExpansionResult
from cwm.graph.tree import (
    ACTION_NAMES,
    BestTracking,
    Node,
    Selection,
    first_fingerprints,
    resolve_duplicate,
    showable_failures,
)


class _FlatSearch(BestTracking):
    kind = "flat"
    version = 1
    feedback_failures = 1
    """Failing transitions an improve prompt shows (WorldCoder* as in the paper: one)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.nodes: list[Node] = [Node(0, None, "root", "", visits=1)]
        self.selections = 0
        self.expansions = 0
        self.best: int | None = None
        self.pending = 0
        self.known: dict[str, int] = {}

    def in_flight(self) -> int:
        return self.pending

    def _selection(self, parent: int, action_type: str) -> Selection:
        n = self.expansions + 1
        key = f"{action_type}{n}" if action_type in ACTION_NAMES else f"{action_type}#{n}"
        sel = Selection(parent, key, action_type, [parent], self.expansions)
        self.expansions += 1
        self.pending += 1
        return sel

    def cancel(self, sel: Selection) -> None:
        self.pending -= 1

    def _add(self, sel: Selection, res: ExpansionResult) -> Node:
        self.pending -= 1
        res, fingerprint = resolve_duplicate(self.nodes, self.known, res)
        child = Node(len(self.nodes), sel.parent, sel.action_type, sel.key, self.nodes[sel.parent].depth + 1,
                     res.program or "", res.program, float(res.score), res.heldout, bug=res.bug, was_bug=res.bug,
                     complete=True, feedback=res.feedback, error=res.error, visits=1, value_sum=float(res.score),
                     failures=showable_failures(res), fingerprint=fingerprint, duplicate_of=res.duplicate_of)
        if fingerprint is not None and child.duplicate_of is None:
            self.known.setdefault(fingerprint, child.id)
        self.nodes.append(child)
        self.nodes[sel.parent].children[sel.key] = child.id
        if self.best is None or child.score > self.nodes[self.best].score:
            self.best = child.id
        return child

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "seed": self.seed, "nodes": [asdict(n) for n in self.nodes],
                "selections": self.selections, "expansions": self.expansions, "best": self.best,
                "pending": self.pending, **self._extra()}

    def _extra(self) -> dict[str, Any]:
        return {}

    def _load(self, d: dict[str, Any]) -> None:
        self.nodes = [Node(**n) for n in d["nodes"]]
        self.selections, self.expansions, self.best = int(d["selections"]), int(d["expansions"]), d["best"]
        self.pending = int(d.get("pending", 0))
        self.known = first_fingerprints(self.nodes)


class BestOfN(_FlatSearch):
    kind = "best-of-n"

    def __init__(self, seed: int = 0, sample: str | None = None) -> None:
        super().__init__(seed)
        self.sample = sample
        """A node type (``--node``, writing from scratch) sampled instead of generate."""

    def select(self) -> Selection | None:
        self.selections += 1
        return self._selection(0, self.sample or "g")

    def _extra(self) -> dict[str, Any]:
        return {"sample": self.sample} if self.sample else {}

    def apply(self, sel: Selection, res: ExpansionResult) -> Node:
        return self._add(sel, res)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BestOfN:
        s = cls(int(d["seed"]), d.get("sample"))
        s._load(d)
        return s


class WorldCoderSearch(_FlatSearch):
    kind = "worldcoder"

    def __init__(self, seed: int = 0, c: float = 5.0, refine: str | None = None) -> None:
        super().__init__(seed)
        self.c = c
        self.refine = refine
        """A node type (``--node``) used to refine healthy programs instead of improve."""
        self.alpha: dict[int, float] = {}
        self.beta: dict[int, float] = {}

    def select(self) -> Selection | None:
        programs = [n for n in self.nodes[1:] if n.program is not None]
        if not programs:
            if self.pending:  # the seed program is on its way; refinements need it
                return None
            self.selections += 1
            return self._selection(0, "g")
        rng = np.random.default_rng(self.seed * 1_000_003 + self.selections)
        self.selections += 1
        draws = [rng.beta(self.alpha[n.id], self.beta[n.id]) for n in programs]
        chosen = programs[int(np.argmax(draws))]
        return self._selection(chosen.id, "f" if chosen.bug else (self.refine or "i"))

    def apply(self, sel: Selection, res: ExpansionResult) -> Node:
        child = self._add(sel, res)
        self.alpha[child.id] = 1 + self.c * child.score
        self.beta[child.id] = 1 + self.c * (1 - child.score)
        if sel.parent != 0:
            success = 1.0 if child.score >= 1.0 else 0.0
            self.alpha[sel.parent] += success
            self.beta[sel.parent] += 1 - success
        return child

    def _extra(self) -> dict[str, Any]:
        return {"c": self.c, "alpha": {str(k): v for k, v in self.alpha.items()},
                "beta": {str(k): v for k, v in self.beta.items()}, **({"refine": self.refine} if self.refine else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorldCoderSearch:
        s = cls(int(d["seed"]), float(d["c"]), d.get("refine"))
        s._load(d)
        s.alpha = {int(k): float(v) for k, v in d["alpha"].items()}
        s.beta = {int(k): float(v) for k, v in d["beta"].items()}
        return s
