"""GIF-MCTS over programs: the tree, selection, value predictors, bug chains and backpropagation.

Pure and deterministic: no I/O, no LLM, no sandbox. The controller asks ``select(k)`` for up to k
expansions, some agent produces each child's program and its score, and ``apply`` grows the tree.

Two controllers live here. ``GIFTree`` (method ``gif-mcts-paper``) is the paper's algorithm; its rules
follow the paper (App. B) and the official code (``gif_mcts.py``), with these deliberate fixes (each
documented in the README):

1. the local value used to train a value predictor excludes the child being added (the official code
   counted it with value 0 before backpropagation);
2. a node whose program ends inside its block ("complete") is not re-expanded by selection; it can
   still be improved or fixed, which the official code never allowed;
3. every level adds exactly L lines (the official code added L + 1);
4. ties are broken by a seeded generator derived from the selection counter, so runs replay exactly;
5. up to k expansions can be in flight: a virtual loss (pending visits with value 0) on the selected
   path steers the next selection elsewhere. With k = 1 nothing is pending at selection time, so the
   search is the sequential algorithm step for step.

``FeedbackGIFTree`` (method ``gif-mcts``, the default) keeps that tree and changes what it believes about
untried improve and fix actions; see its docstring. Both recognise duplicate children (a program equal to
an existing node's up to layout and comments): the paper tree only copies the original's score instead
of scoring it again (its search is unchanged), the feedback tree also treats it as a zero-gain outcome.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Self

from cwm.agents.normalize import program_key
from cwm.agents.results import ExpansionResult

ActionType = Literal["g", "i", "f"]
ACTION_NAMES: dict[str, str] = {"g": "generate", "i": "improve", "f": "fix"}
"""The built-in action types under the single letters every checkpoint uses; any other node type (a
registered node, see ``cwm.nodes``) is its own action type under its name, with keys ``name#n``."""


def key_type(key: str) -> str:
    """The action type of a child key: ``g3`` -> ``g``, ``analyze#2`` -> ``analyze``."""
    return key.split("#", 1)[0] if "#" in key else key[0]


def next_key(key: str) -> str:
    """The key of the next sibling of the same type: ``g1`` -> ``g2``, ``analyze#1`` -> ``analyze#2``."""
    t = key_type(key)
    n = int(key[len(t) + 1:]) if "#" in key else int(key[1:])
    return f"{t}#{n + 1}" if "#" in key else f"{t}{n + 1}"


def first_key(t: str) -> str:
    return f"{t}1" if t in ACTION_NAMES else f"{t}#1"


def action_name(t: str) -> str:
    return ACTION_NAMES.get(t, t)


@dataclass(frozen=True)
class ExtraAction:
    """A node type beyond generate/improve/fix that a GIF-MCTS run enables (``--node``).

    ``needs_parent``: it rewrites an existing program (offered at every healthy node with a program, like
    improve); otherwise it writes one from the description (offered at the root, like generate)."""

    name: str
    prior: float = 0.5
    """Value predicted for it before any is measured (the linear predictor's global prior)."""
    prior_gain: float = 0.05
    """Gain over its parent assumed before any is measured (the feedback tree's prior)."""
    needs_parent: bool = True


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
    # used by the feedback tree (gif-mcts) only; the paper tree ignores them
    prior_gain_improve: float = 0.05
    """Improvement an improve is assumed to bring before this run has measured any (one pseudo-sample)."""
    prior_gain_fix: float = 0.1
    prior_gain_count: int = 1
    stall_patience: int = 2
    """Expansions without a new best after which the best untried improvable node's improve is forced."""
    extra_actions: tuple[ExtraAction, ...] = ()
    """Enabled node types beyond generate/improve/fix (feedback tree only; the paper tree has none)."""

    def __post_init__(self) -> None:  # a checkpoint holds them as JSON objects
        object.__setattr__(self, "extra_actions", tuple(
            a if isinstance(a, ExtraAction) else ExtraAction(**a) for a in self.extra_actions))

    @property
    def action_types(self) -> tuple[str, ...]:
        return ("g", "i", "f", *(a.name for a in self.extra_actions))

    def extra(self, t: str) -> ExtraAction | None:
        return next((a for a in self.extra_actions if a.name == t), None)

    def prior(self, t: str) -> float:
        builtin = {"g": self.prior_generate, "i": self.prior_improve, "f": self.prior_fix}
        a = self.extra(t)
        return builtin[t] if a is None else a.prior

    def prior_gain(self, t: str) -> float:
        builtin = {"g": 0.0, "i": self.prior_gain_improve, "f": self.prior_gain_fix}
        a = self.extra(t)
        return builtin[t] if a is None else a.prior_gain

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
    """The first failing transition an improve prompt may show (what the paper's prompt shows)."""
    error: str | None = None
    failures: list[dict[str, Any]] | None = None
    """The failing transitions an improve prompt may show (first of each kind); None in older trees."""
    fingerprint: str | None = None
    """``program_key`` of the program: equal for programs that differ only in layout and comments."""
    duplicate_of: int | None = None
    """The earlier node whose program this one repeats (its score was copied, not measured again)."""

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
    reason: str = "uct"
    """'uct', or 'stall' when the feedback tree forced an untried improve (see FeedbackGIFTree)."""


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


def first_fingerprints(nodes: list[Node]) -> dict[str, int]:
    """The first node holding each distinct program (duplicates point at it, so they are left out)."""
    out: dict[str, int] = {}
    for n in nodes:
        if n.fingerprint is not None and n.duplicate_of is None:
            out.setdefault(n.fingerprint, n.id)
    return out


def resolve_duplicate(nodes: list[Node], known: dict[str, int], res: ExpansionResult
                      ) -> tuple[ExpansionResult, str | None]:
    """The result as the tree records it, and the program's fingerprint.

    A program equal to an earlier node's (up to layout and comments) takes that node's measurements:
    the agent may have skipped scoring it (``duplicate_of`` set), or scored it concurrently with the
    original; either way both nodes then carry the same numbers."""
    fp = program_key(res.program) if res.program else None
    dup = res.duplicate_of if res.duplicate_of is not None else (known.get(fp) if fp is not None else None)
    if dup is None or not 0 < dup < len(nodes):
        return res, fp
    o = nodes[dup]
    if o.duplicate_of is not None:
        o = nodes[o.duplicate_of]
    return ExpansionResult(res.program, o.score, o.was_bug, o.heldout, o.feedback, o.error, o.failures,
                           o.id), fp


def showable_failures(res: ExpansionResult) -> list[dict[str, Any]]:
    """What an improve prompt can show for this result (``feedback`` alone in results older than ``failures``)."""
    if res.failures is not None:
        return list(res.failures)
    return [res.feedback] if res.feedback else []


class GIFTree(BestTracking):
    """The paper's GIF-MCTS (method ``gif-mcts-paper``): its rules, pinned; see the module docstring."""

    kind = "gif-mcts-paper"
    version = 1
    feedback_failures = 1
    """How many failing transitions its improve prompts show (the paper: one)."""

    def __init__(self, config: GIFConfig | None = None) -> None:
        self.config = config or GIFConfig()
        c = self.config
        root = Node(0, None, "root", "", fixes_left=c.max_fixes, visits=1)
        root.children = {"g1": None}
        self.nodes: list[Node] = [root]
        self.predictors = {t: ValuePredictor(n=1 + c.prior_count) for t in c.action_types}
        self.global_sum = {t: c.prior(t) * c.prior_count for t in c.action_types}
        self.global_count = {t: float(c.prior_count) for t in c.action_types}
        self.selections = 0
        self.expansions = 0
        self.best: int | None = None
        self.predictor_log: list[dict[str, Any]] = []
        self.known: dict[str, int] = {}
        """Fingerprint -> first node with that program (derived from the nodes, not persisted)."""

    # ------------------------------------------------------------------------------ values
    def global_value(self, t: str) -> float:
        return self.global_sum[t] / self.global_count[t]

    def local_value(self, parent: Node, t: str, exclude: int | None = None, *, real: bool = False) -> float | None:
        vals = [self.nodes[cid].value(real=real) for k, cid in parent.children.items()
                if key_type(k) == t and cid is not None and cid != exclude]
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
            t = key_type(key)
            n_same = sum(1 for k in parent.children if key_type(k) == t) - 1
            e = c.ucb_c * math.sqrt(log_n / (n_same + c.eps))
            v = min(1.0, max(0.0, self.predict(parent, t)))
        return v + e, v, e

    def predict(self, parent: Node, t: str) -> float:
        """Predicted value of an untried action of type ``t`` at ``parent`` (the paper's linear model)."""
        return self.predictors[t].predict(self.global_value(t), self.local_value(parent, t))

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
                sel = Selection(node.id, key, key_type(key), path, self.expansions, trace)
                self.expansions += 1
                self._add_virtual(sel)
                return sel
            node = self.nodes[cid]
            path.append(node.id)

    def _widen(self, node: Node, key: str) -> None:
        """Choosing a new action adds a fresh sibling of its type (bug nodes never widen)."""
        if node.bug:
            return
        t = key_type(key)
        if t == "g" and not self.config.allow_generate:
            return
        nxt = next_key(key)
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
        res, fingerprint = resolve_duplicate(self.nodes, self.known, res)
        prog = res.program or ""
        parent_lines = parent.state_code.split("\n") if parent.state_code else []
        lines = prog.split("\n") if prog else []
        cut = len(parent_lines) + c.lines_per_node
        complete = len(lines) <= cut
        child = Node(len(self.nodes), parent.id, t, sel.key, parent.depth + 1, "\n".join(lines[:cut]),
                     res.program, float(res.score), res.heldout, bug=res.bug, was_bug=res.bug,
                     complete=complete, feedback=res.feedback, error=res.error,
                     failures=showable_failures(res), fingerprint=fingerprint, duplicate_of=res.duplicate_of)
        child.fixes_left = parent.fixes_left - 1 if (res.bug and t == "f") else c.max_fixes
        child.reward = child.score if complete else 0.0
        self._set_actions(child, res)
        self.nodes.append(child)
        parent.children[sel.key] = child.id
        if fingerprint is not None and child.duplicate_of is None:
            self.known.setdefault(fingerprint, child.id)
        self._learn(parent, child, t)
        value = 0.0 if complete else child.score
        self._backprop([*sel.path, child.id], value, visit_only=self._visit_only(child))
        if parent.bug:
            self._settle_bug_chain(parent, child)
        raised = self.best is None or child.score > self.nodes[self.best].score
        if raised:
            self.best = child.id
        self._after_apply(child, raised)
        return child

    # ------------------------------------------------------------- rules a variant may change
    def _set_actions(self, child: Node, res: ExpansionResult) -> None:
        """The actions a new node offers: fix only when buggy, improve only when complete, else both."""
        c = self.config
        if res.bug:
            if child.fixes_left > 0:
                child.children = {"f1": None}
                child.value_sum = c.bug_value(child.fixes_left)
        elif child.complete:
            if c.allow_improve:
                child.children = {"i1": None}
        else:
            child.children = {"g1": None} if c.allow_generate else {}
            if c.allow_improve:
                child.children["i1"] = None

    def _learn(self, parent: Node, child: Node, t: str) -> None:
        """Train the action type's value predictor: local value over the siblings already there (fix 1),
        global value before this sample."""
        self._train_predictor(parent, child, t, child.score)

    def _train_predictor(self, parent: Node, child: Node, t: str, target: float) -> None:
        v_g, v_l = self.global_value(t), self.local_value(parent, t, exclude=child.id, real=True)
        loss = self.predictors[t].update(v_g, v_l, target)
        self.predictor_log.append({"type": t, "v_g": v_g, "v_l": v_l, "target": target, "loss": loss,
                                   "w_g": self.predictors[t].w_g, "w_l": self.predictors[t].w_l})
        self.global_sum[t] += target
        self.global_count[t] += 1

    def _visit_only(self, child: Node) -> bool:
        """Temporary (bug) values only add visits to the ancestors."""
        return child.bug

    def _after_apply(self, child: Node, raised_best: bool) -> None:
        """Hook after a child is in place and the best is updated."""

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
            "kind": self.kind, "version": self.version, "config": asdict(self.config),
            "nodes": [asdict(n) for n in self.nodes],
            "predictors": {t: asdict(p) for t, p in self.predictors.items()},
            "global_sum": self.global_sum, "global_count": self.global_count, "selections": self.selections,
            "expansions": self.expansions, "best": self.best, "predictor_log": self.predictor_log,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        tree = cls(GIFConfig(**d["config"]))
        tree._load(d)
        return tree

    def _load(self, d: dict[str, Any]) -> None:
        tree = self
        tree.nodes = [Node(**n) for n in d["nodes"]]
        tree.predictors = {t: ValuePredictor(**p) for t, p in d["predictors"].items()}
        tree.global_sum = dict(d["global_sum"])
        tree.global_count = dict(d["global_count"])
        tree.selections = int(d["selections"])
        tree.expansions = int(d["expansions"])
        tree.best = d["best"]
        tree.predictor_log = list(d["predictor_log"])
        tree.known = first_fingerprints(tree.nodes)


class FeedbackGIFTree(GIFTree):
    """GIF-MCTS that uses its feedback (method ``gif-mcts``, the default).

    The paper predicts an untried improve from a global prior (0.55) moved only by measured improves,
    while a generate child inherits its program's score. With a capable model whose first program already
    scores 0.98, generate then always wins, improve is never tried, and the model never sees a failing
    transition. This tree keeps the paper's tree, UCT, generate predictor, bug chains and backpropagation,
    and changes four things:

    1. **Improve and fix are predicted from their parent.** An untried improve (fix) at node P is worth
       ``P.score + gain``, where ``gain`` is the mean improvement (child score minus parent score) that
       improves (fixes) have measured in this run, shrunk towards a small prior gain by one pseudo-sample,
       and blended with the gains of P's own improve (fix) children, one pseudo-sample for the run's
       mean. A model whose improves help is asked to improve its best programs; one whose improves hurt
       has its improves predicted below their parents and goes back to generating.
    2. **Bounded wait for improve.** After ``stall_patience`` expansions in a row that did not raise the
       best score, the next selection is the untried improve of the best improvable node (highest score,
       earliest on ties): healthy, not a duplicate, below 1.0, with a failing transition it may show and
       no improve tried or in flight. A forced selection restarts the count, so at most one in
       ``stall_patience + 1`` selections is forced, and each node is forced at most once.
    3. **Duplicates are zero-gain outcomes.** A child whose program repeats an earlier node's gets that
       node's score (never re-scored), offers no actions (its original holds them), counts as gain 0 for
       its action type (the generate predictor is trained with its parent's score as target), and only
       adds visits to its ancestors, so a model that keeps writing the same program makes the action that
       produced it look no better than staying put.
    4. **Nothing to show, no improve.** A node wrong only on transitions the dataset's audit marked
       inconsistent offers no improve: it is as good as the data allows.
    """

    kind = "gif-mcts"
    version = 2
    feedback_failures = 3

    def __init__(self, config: GIFConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.gain_sum = {t: c.prior_gain(t) * c.prior_gain_count for t in c.action_types}
        self.gain_count = {t: float(c.prior_gain_count) for t in c.action_types}
        for a in c.extra_actions:
            if not a.needs_parent:
                self.nodes[0].children[first_key(a.name)] = None
        self.stall = 0
        """Expansions applied since the best score last rose (or since the last forced improve)."""

    # ------------------------------------------------------------------------------ values
    def gain(self, parent: Node, child: Node) -> float:
        """What an expansion measured: its score over its parent's, zero for a duplicate."""
        return 0.0 if child.duplicate_of is not None else child.score - parent.score

    def mean_gain(self, t: str) -> float:
        return self.gain_sum[t] / self.gain_count[t]

    def expected_gain(self, parent: Node, t: str) -> float:
        """The run's mean gain for ``t`` (one pseudo-sample) blended with ``parent``'s own ``t`` children."""
        local = [self.gain(parent, self.nodes[cid]) for k, cid in parent.children.items()
                 if key_type(k) == t and cid is not None]
        return (sum(local) + self.mean_gain(t)) / (len(local) + 1)

    def _from_scratch(self, t: str) -> bool:
        """Generate-like: it writes a program from the description, so its parent's score says nothing."""
        a = self.config.extra(t)
        return t == "g" or (a is not None and not a.needs_parent)

    def predict(self, parent: Node, t: str) -> float:
        if self._from_scratch(t):
            return super().predict(parent, t)
        return parent.score + self.expected_gain(parent, t)

    # ----------------------------------------------------------------------------- selection
    def improvable(self, node: Node) -> bool:
        return (node.id != 0 and not node.bug and not node.pruned and node.duplicate_of is None
                and node.program is not None and node.score < 1.0 and bool(node.failures)
                and any(key_type(k) == "i" for k in node.children))

    def _untried_improve(self, node: Node) -> str | None:
        keys = [k for k in node.children if key_type(k) == "i"]
        if any(node.children[k] is not None or k in node.pending for k in keys):
            return None
        return keys[0] if keys else None

    def select(self) -> Selection | None:
        first = self._first_try()
        if first is not None:
            return first
        if self.stall >= self.config.stall_patience:
            forced = self._forced_improve()
            if forced is not None:
                return forced
        return super().select()

    def _first_try(self) -> Selection | None:
        """Each enabled extra node type is tried once as soon as some node offers it (at the best such
        node), so its predictor learns from a measurement instead of staying at its prior."""
        for a in self.config.extra_actions:
            if any(n.action == a.name for n in self.nodes) or any(
                    key_type(k) == a.name for n in self.nodes for k in n.pending):
                continue
            offers = [(n, k) for n in self.nodes if not n.pruned for k, cid in n.children.items()
                      if key_type(k) == a.name and cid is None and k not in n.pending]
            if offers:
                node, key = max(offers, key=lambda o: (o[0].score, -o[0].id))
                return self._force(node, key, "first-try")
        return None

    def _forced_improve(self) -> Selection | None:
        cands = [n for n in self.nodes if self.improvable(n) and self._untried_improve(n) is not None]
        if not cands:
            return None
        node = max(cands, key=lambda n: (n.score, -n.id))
        key = self._untried_improve(node)
        assert key is not None
        return self._force(node, key, "stall")

    def _force(self, node: Node, key: str, reason: str) -> Selection:
        path = [node.id]
        while self.nodes[path[0]].parent is not None:
            path.insert(0, self.nodes[path[0]].parent)  # type: ignore[arg-type]
        self.selections += 1
        if reason == "stall":
            self.stall = 0
        self._widen(node, key)
        sel = Selection(node.id, key, key_type(key), path, self.expansions,
                        {f"{node.id}:{key}": [round(x, 6) for x in self.ucb(node, key)]}, reason=reason)
        self.expansions += 1
        self._add_virtual(sel)
        return sel

    # ----------------------------------------------------------------------------- expansion
    def _set_actions(self, child: Node, res: ExpansionResult) -> None:
        if child.duplicate_of is not None:
            child.children = {}  # its original offers the same actions
            return
        super()._set_actions(child, res)
        if not child.failures or child.score >= 1.0:  # nothing the prompt could show
            child.children = {k: v for k, v in child.children.items() if key_type(k) != "i"}
        if child.program is not None and child.score < 1.0:
            for a in self.config.extra_actions:
                if a.needs_parent:
                    child.children[first_key(a.name)] = None

    def _learn(self, parent: Node, child: Node, t: str) -> None:
        gain = self.gain(parent, child)
        self.gain_sum[t] += gain
        self.gain_count[t] += 1
        if self._from_scratch(t):
            target = parent.score if child.duplicate_of is not None else child.score
            self._train_predictor(parent, child, t, target)
        else:
            self.predictor_log.append({"type": t, "parent": parent.score, "gain": gain,
                                       "mean_gain": self.mean_gain(t)})

    def _visit_only(self, child: Node) -> bool:
        return child.bug or child.duplicate_of is not None

    def _after_apply(self, child: Node, raised_best: bool) -> None:
        self.stall = 0 if raised_best else self.stall + 1

    # ------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "gain_sum": self.gain_sum, "gain_count": self.gain_count,
                "stall": self.stall}

    def _load(self, d: dict[str, Any]) -> None:
        super()._load(d)
        self.gain_sum = dict(d["gain_sum"])
        self.gain_count = dict(d["gain_count"])
        self.stall = int(d["stall"])
