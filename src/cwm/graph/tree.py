"""GIF-MCTS over programs: the tree, selection, value predictors, bug chains and backpropagation.

Pure and deterministic: no I/O, no LLM, no sandbox. The controller asks ``select(k)`` for up to k
expansions, some agent produces each child's program and its score, and ``apply`` grows the tree. The
rules follow the paper (App. B) and the official code (``gif_mcts.py``), with these deliberate fixes
(each documented in the README):

1. the local value used to train a value predictor excludes the child being added (the official code
   counted it with value 0 before backpropagation);
2. a node whose program ends inside its block ("complete") is not re-expanded by selection; it can
   still be improved or fixed, which the official code never allowed;
3. every level adds exactly L lines (the official code added L + 1);
4. ties are broken by a seeded generator derived from the selection counter, so runs replay exactly;
5. up to k expansions can be in flight: a virtual loss (pending visits with value 0) on the selected
   path steers the next selection elsewhere. With k = 1 nothing is pending at selection time, so the
   search is the sequential algorithm step for step.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cwm.agents.results import ExpansionResult

ActionType = Literal["g", "i", "f"]
ACTION_NAMES: dict[str, str] = {"g": "generate", "i": "improve", "f": "fix"}


@dataclass(frozen=True)
class GIFConfig:
    """The paper's hyperparameters (Table 4) as defaults."""

    lines_per_node: int = 2
    ucb_c: float = 0.1
    eps: float = 1.0
    discount: float = 1.0
    prior_generate: float = 0.5
    prior_improve: float = 0.55
    prior_fix: float = 0.5
    prior_count: int = 2
    max_fixes: int = 3
    allow_generate: bool = True
    allow_improve: bool = True
    seed: int = 0

    def prior(self, t: str) -> float:
        return {"g": self.prior_generate, "i": self.prior_improve, "f": self.prior_fix}[t]

    def bug_value(self, fixes_left: int) -> float:
        """Temporary value of a buggy node: 0.99 with every fix left, down to 0 with none (linspace)."""
        return 0.99 * fixes_left / self.max_fixes if self.max_fixes else 0.0


@dataclass
class Node:
    id: int
    parent: int | None
    action: str
    """'root', 'g', 'i' or 'f': the action that created the node."""
    key: str
    depth: int = 0
    state_code: str = ""
    """The node's state: the first (depth x L) lines of its program."""
    program: str | None = None
    """The complete program sampled when the node was created (its rollout)."""
    score: float = 0.0
    """Accuracy of ``program`` on the feedback transitions (value + reward)."""
    heldout: float | None = None
    value_sum: float = 0.0
    visits: int = 0
    reward: float = 0.0
    complete: bool = False
    bug: bool = False
    was_bug: bool = False
    pruned: bool = False
    fixes_left: int = 3
    children: dict[str, int | None] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    """Action keys with an expansion in flight, and how many virtual visits this node carries."""
    virtual: int = 0
    feedback: dict[str, Any] | None = None
    """What improve and fix prompts show: the first failing transition, or the error."""
    error: str | None = None

    def value(self, *, real: bool = False) -> float:
        """Mean value; selection counts in-flight (virtual) visits as zeros, learning does not."""
        n = self.visits + (0 if real else self.virtual)
        return self.value_sum / n if n else 0.0


@dataclass
class ValuePredictor:
    """v = (w_G v_G + w_L v_L) / (w_G + w_L), trained by SGD on squared error with learning rate 1/n."""

    w_g: float = 0.5
    w_l: float = 0.5
    n: int = 3

    def predict(self, v_g: float, v_l: float | None) -> float:
        if v_l is None:
            return v_g
        return (self.w_g * v_g + self.w_l * v_l) / (self.w_g + self.w_l)

    def update(self, v_g: float, v_l: float | None, target: float) -> float:
        pred = self.predict(v_g, v_l)
        loss = (pred - target) ** 2
        if v_l is not None:
            s2 = (self.w_g + self.w_l) ** 2
            g_wg = 2 * (pred - target) * self.w_l * (v_g - v_l) / s2
            g_wl = 2 * (pred - target) * self.w_g * (v_l - v_g) / s2
            lr = 1.0 / self.n
            self.w_g -= lr * g_wg
            self.w_l -= lr * g_wl
        self.n += 1
        return loss


@dataclass
class Selection:
    """One expansion to perform: apply ``action_type`` at ``parent`` under ``key``."""

    parent: int
    key: str
    action_type: str
    path: list[int]
    index: int
    """Global expansion index (also the LLM sample index, so retries of it replay from the cache)."""
    scores: dict[str, list[float]] = field(default_factory=dict)
    """UCT terms at each step of the descent, for traces: key -> [U, V, E]."""


class BestTracking:
    """The best node so far (highest feedback score, earliest on ties) and the early-stop test."""

    nodes: list[Node]
    best: int | None

    @property
    def best_node(self) -> Node | None:
        return None if self.best is None else self.nodes[self.best]

    def solved(self) -> bool:
        b = self.best_node
        return b is not None and b.score >= 1.0


class GIFTree(BestTracking):
    def __init__(self, config: GIFConfig | None = None) -> None:
        self.config = config or GIFConfig()
        c = self.config
        root = Node(0, None, "root", "", fixes_left=c.max_fixes, visits=1)
        root.children = {"g1": None}
        self.nodes: list[Node] = [root]
        self.predictors = {t: ValuePredictor(n=1 + c.prior_count) for t in "gif"}
        self.global_sum = {t: c.prior(t) * c.prior_count for t in "gif"}
        self.global_count = {t: float(c.prior_count) for t in "gif"}
        self.selections = 0
        self.expansions = 0
        self.best: int | None = None
        self.predictor_log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------ values
    def global_value(self, t: str) -> float:
        return self.global_sum[t] / self.global_count[t]

    def local_value(self, parent: Node, t: str, exclude: int | None = None, *, real: bool = False) -> float | None:
        vals = [self.nodes[cid].value(real=real) for k, cid in parent.children.items()
                if k[0] == t and cid is not None and cid != exclude]
        return sum(vals) / len(vals) if vals else None

    def ucb(self, parent: Node, key: str) -> tuple[float, float, float]:
        c = self.config
        n_parent = parent.visits + parent.virtual
        log_n = math.log(n_parent) if n_parent > 0 else 0.0
        cid = parent.children[key]
        if cid is not None:
            child = self.nodes[cid]
            v = child.value()
            e = c.ucb_c * math.sqrt(log_n / (child.visits + child.virtual + c.eps))
        else:
            t = key[0]
            n_same = sum(1 for k in parent.children if k[0] == t) - 1
            e = c.ucb_c * math.sqrt(log_n / (n_same + c.eps))
            v = min(1.0, max(0.0, self.predictors[t].predict(self.global_value(t), self.local_value(parent, t))))
        return v + e, v, e

    # ----------------------------------------------------------------------------- selection
    def _candidates(self, node: Node) -> list[str]:
        out = []
        for k, cid in node.children.items():
            if cid is None:
                if k not in node.pending:
                    out.append(k)
            else:
                child = self.nodes[cid]
                if not child.pruned and self._has_options(child):
                    out.append(k)
        return out

    def _has_options(self, node: Node, depth: int = 0) -> bool:
        if node.pruned or depth > 200:
            return False
        for k, cid in node.children.items():
            if cid is None and k not in node.pending:
                return True
            if cid is not None and self._has_options(self.nodes[cid], depth + 1):
                return True
        return False

    def select(self) -> Selection | None:
        """Descend from the root by UCT to an unexpanded action; None when nothing is selectable now."""
        rng = random.Random(self.config.seed * 1_000_003 + self.selections)
        self.selections += 1
        node = self.nodes[0]
        path = [0]
        trace: dict[str, list[float]] = {}
        while True:
            cands = self._candidates(node)
            if not cands:
                return None
            scored = {k: self.ucb(node, k) for k in cands}
            for k, s in scored.items():
                trace[f"{node.id}:{k}"] = [round(x, 6) for x in s]
            top = max(s[0] for s in scored.values())
            ties = [k for k in cands if scored[k][0] == top]
            key = ties[0] if len(ties) == 1 else rng.choice(ties)
            cid = node.children[key]
            if cid is None:
                self._widen(node, key)
                sel = Selection(node.id, key, key[0], path, self.expansions, trace)
                self.expansions += 1
                self._add_virtual(sel)
                return sel
            node = self.nodes[cid]
            path.append(node.id)

    def _widen(self, node: Node, key: str) -> None:
        """Choosing a new action adds a fresh sibling of its type (bug nodes never widen)."""
        if node.bug:
            return
        t = key[0]
        if t == "g" and not self.config.allow_generate:
            return
        nxt = f"{t}{int(key[1:]) + 1}"
        if nxt not in node.children:
            node.children[nxt] = None

    def _add_virtual(self, sel: Selection) -> None:
        for nid in sel.path:
            self.nodes[nid].virtual += 1
        parent = self.nodes[sel.parent]
        parent.pending[sel.key] = parent.pending.get(sel.key, 0) + 1

    def _remove_virtual(self, sel: Selection) -> None:
        for nid in sel.path:
            self.nodes[nid].virtual -= 1
        parent = self.nodes[sel.parent]
        parent.pending[sel.key] -= 1
        if not parent.pending[sel.key]:
            del parent.pending[sel.key]

    def cancel(self, sel: Selection) -> None:
        """Forget a selection whose expansion produced nothing (the LLM call failed for good)."""
        self._remove_virtual(sel)

    # ----------------------------------------------------------------------------- expansion
    def apply(self, sel: Selection, res: ExpansionResult) -> Node:
        """Add the child a selection produced, train the value predictor, backpropagate, settle bugs."""
        c = self.config
        self._remove_virtual(sel)
        parent = self.nodes[sel.parent]
        t = sel.action_type
        prog = res.program or ""
        parent_lines = parent.state_code.split("\n") if parent.state_code else []
        lines = prog.split("\n") if prog else []
        cut = len(parent_lines) + c.lines_per_node
        complete = len(lines) <= cut
        child = Node(len(self.nodes), parent.id, t, sel.key, parent.depth + 1, "\n".join(lines[:cut]),
                     res.program, float(res.score), res.heldout, bug=res.bug, was_bug=res.bug,
                     complete=complete, feedback=res.feedback, error=res.error)
        child.fixes_left = parent.fixes_left - 1 if (res.bug and t == "f") else c.max_fixes
        child.reward = child.score if complete else 0.0
        if res.bug:
            if child.fixes_left > 0:
                child.children = {"f1": None}
                child.value_sum = c.bug_value(child.fixes_left)
        elif complete:
            if c.allow_improve:
                child.children = {"i1": None}
        else:
            child.children = {"g1": None} if c.allow_generate else {}
            if c.allow_improve:
                child.children["i1"] = None
        self.nodes.append(child)
        parent.children[sel.key] = child.id
        # value predictor: local value over the siblings already there (fix 1), global before this sample
        v_g, v_l = self.global_value(t), self.local_value(parent, t, exclude=child.id, real=True)
        loss = self.predictors[t].update(v_g, v_l, child.score)
        self.predictor_log.append({"type": t, "v_g": v_g, "v_l": v_l, "target": child.score, "loss": loss,
                                   "w_g": self.predictors[t].w_g, "w_l": self.predictors[t].w_l})
        self.global_sum[t] += child.score
        self.global_count[t] += 1
        value = 0.0 if complete else child.score
        self._backprop([*sel.path, child.id], value, visit_only=res.bug)
        if parent.bug:
            self._settle_bug_chain(parent, child)
        if self.best is None or child.score > self.nodes[self.best].score:
            self.best = child.id
        return child

    def _backprop(self, path: list[int], value: float, *, visit_only: bool) -> None:
        for nid in reversed(path):
            node = self.nodes[nid]
            node.value_sum += node.value(real=True) if visit_only else value
            node.visits += 1
            value = node.reward + self.config.discount * value

    def _chain(self, parent: Node) -> list[Node]:
        """The buggy parent, its consecutive fix ancestors, and the node whose program first had the bug."""
        chain = [parent]
        node = parent
        while node.action == "f" and node.parent is not None:
            node = self.nodes[node.parent]
            chain.append(node)
        return chain

    def _settle_bug_chain(self, parent: Node, child: Node) -> None:
        chain = self._chain(parent)
        if child.bug and child.fixes_left == 0:
            child.pruned = True
            for node in chain:
                node.value_sum = 0.0
                node.pruned = True
        elif child.bug:
            for node in chain:
                node.value_sum = self.config.bug_value(child.fixes_left) * node.visits
                node.bug = False
        else:
            for node in chain:
                node.value_sum = child.value(real=True) * node.visits
                node.bug = False

    # ------------------------------------------------------------------------------ queries
    def in_flight(self) -> int:
        return sum(sum(n.pending.values()) for n in self.nodes)

    # ------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "gif-mcts", "config": asdict(self.config), "nodes": [asdict(n) for n in self.nodes],
            "predictors": {t: asdict(p) for t, p in self.predictors.items()},
            "global_sum": self.global_sum, "global_count": self.global_count, "selections": self.selections,
            "expansions": self.expansions, "best": self.best, "predictor_log": self.predictor_log,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GIFTree:
        tree = cls(GIFConfig(**d["config"]))
        tree.nodes = [Node(**n) for n in d["nodes"]]
        tree.predictors = {t: ValuePredictor(**p) for t, p in d["predictors"].items()}
        tree.global_sum = dict(d["global_sum"])
        tree.global_count = dict(d["global_count"])
        tree.selections = int(d["selections"])
        tree.expansions = int(d["expansions"])
        tree.best = d["best"]
        tree.predictor_log = list(d["predictor_log"])
        return tree
