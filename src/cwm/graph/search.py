"""The search as a LangGraph state machine.

    START -> controller --Send x k--> expand (any registered node type) --> controller -> ... -> END

The controller node owns the search controller (GIF-MCTS, WorldCoder or best-of-N, all pure): it folds the
last superstep's expansion records into the tree (expand, backpropagate, settle bugs), checks the stop
rules (solved, budget, token/cost/time limits, a fatal LLM error), then selects up to k new expansions and
dispatches them with ``Send``. Each ``expand`` task runs the selected node type (``cwm.nodes``: one LLM
call for generate/improve/fix, a bounded tool-using loop for analyze) and one sandbox scoring, and returns
a record; every LLM turn counts against the call budget. It never raises, so a failing branch cannot
cancel its siblings. State holds plain JSON-able values only; the tree is small (programs are a few kB).
A SQLite checkpointer persists every superstep.
"""

from __future__ import annotations

import asyncio
import operator
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Overwrite, Send
from typing_extensions import TypedDict

from cwm.agents.expand import AgentDeps, run_expansion
from cwm.agents.llm.types import LLMError
from cwm.agents.results import ExpansionResult
from cwm.graph.methods import METHODS, Controller, load_controller, new_controller
from cwm.graph.tree import GIFConfig, Node, Selection, action_name

log = structlog.get_logger("cwm.graph")
Method = str
"""A registered method name (``cwm.graph.methods.METHODS``)."""
__all__ = ["METHODS", "Controller", "Method", "build_graph", "load_controller", "new_controller"]


@dataclass(frozen=True)
class Budget:
    calls: int
    concurrency: int = 1
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None


class SearchState(TypedDict, total=False):
    controller: dict[str, Any]
    inflight: dict[str, dict[str, Any]]
    results: Annotated[list[dict[str, Any]], operator.add]
    calls: int
    """Expansions done (LLM calls the search made, replayed ones included): the budget counts these."""
    paid_calls: int
    tokens: int
    cost_usd: float
    started: float
    elapsed_s: float
    stop: str | None
    plan: dict[str, Any] | None


class ExpandInput(TypedDict):
    selection: dict[str, Any]
    parent: dict[str, Any]
    known: dict[str, int]
    """Fingerprint -> node of every distinct program so far: a reply repeating one is not scored again."""
    feedback_failures: int
    """How many failing transitions the controller's improve prompts show."""
    turns_left: int
    """LLM turns the run's budget has left for this expansion (a multi-turn node stops there)."""


@dataclass
class SearchDeps:
    agents: AgentDeps
    method: Method
    budget: Budget
    seed: int = 0
    gif: GIFConfig | None = None
    env_id: str | None = None
    plan_episodes: int = 0
    """After the search, act in the real environment with the best program for this many episodes."""
    env_kwargs: dict[str, Any] | None = None
    """Arguments the environment is made with for that planning (--env-kwargs)."""
    plan_timeout_s: float = 600.0
    """Deadline of that planning: a program that loops on states the data never showed would otherwise hold
    a core (and the run) for the sandbox's whole CPU allowance."""


def _parent_view(node: Node) -> dict[str, Any]:
    return {"id": node.id, "state_code": node.state_code, "program": node.program, "feedback": node.feedback,
            "failures": node.failures, "error": node.error}


def _stop_reason(state: SearchState, ctrl: Controller, budget: Budget) -> str | None:
    if ctrl.solved():
        return "solved"
    if state.get("calls", 0) >= budget.calls:
        return "budget"
    if budget.max_tokens is not None and state.get("tokens", 0) >= budget.max_tokens:
        return "token limit"
    if budget.max_cost_usd is not None and state.get("cost_usd", 0.0) >= budget.max_cost_usd:
        return "cost limit"
    if budget.max_seconds is not None and state.get("elapsed_s", 0.0) >= budget.max_seconds:
        return "time limit"
    return None


async def controller(state: SearchState, runtime: Runtime[SearchDeps]
                     ) -> Command[Literal["expand", "planner", "__end__"]]:
    deps = runtime.context
    t_ctrl = time.perf_counter()
    now = time.time()
    started = state.get("started") or now
    if state.get("controller"):
        ctrl = load_controller(state["controller"])
    else:
        extra = tuple(spec.action() for code, spec in deps.agents.nodes.items() if code not in ("g", "i", "f"))
        ctrl = new_controller(deps.method, deps.seed, deps.gif, extra)
        log.info("run.start", method=deps.method, budget=deps.budget.calls, concurrency=deps.budget.concurrency)
    inflight = dict(state.get("inflight") or {})
    calls, paid = state.get("calls", 0), state.get("paid_calls", 0)
    tokens, cost = state.get("tokens", 0), state.get("cost_usd", 0.0)
    stop: str | None = state.get("stop")
    for rec in sorted(state.get("results") or [], key=lambda r: int(r["index"])):
        done = Selection(**inflight.pop(str(rec["index"])))
        if rec.get("llm_error"):
            ctrl.cancel(done)
            log.warning("llm.failed", index=done.index, error=rec["llm_error"])
            stop = stop or f"LLM error: {rec['llm_error']}"
            continue
        turns = int(rec["meta"].get("turns", 1))
        calls += max(1, turns)  # an expansion uses one call of the budget even if its node asked no LLM
        if not rec["meta"].get("cached"):
            paid += turns
            tokens += int(rec["meta"].get("tokens", 0))
            cost += float(rec["meta"].get("cost_usd", 0.0))
        before = ctrl.best_node.id if ctrl.best_node else None
        node = ctrl.apply(done, ExpansionResult(**rec["result"]))
        log.info("mcts.expand", index=done.index, node=node.id, parent=done.parent,
                 action=action_name(done.action_type), score=round(node.score, 6), heldout=node.heldout,
                 bug=node.bug, complete=node.complete, duplicate=node.duplicate_of)
        log.info("mcts.backprop", node=node.id, path=[*done.path, node.id],
                 values=[round(ctrl.nodes[i].value(), 6) for i in [*done.path, node.id]])
        best = ctrl.best_node
        if best is not None and best.id != before:
            log.info("mcts.best", node=best.id, score=round(best.score, 6), heldout=best.heldout, calls=calls)
    new_state: dict[str, Any] = {"started": started, "elapsed_s": now - started, "calls": calls,
                                 "paid_calls": paid, "tokens": tokens, "cost_usd": cost}
    merged: SearchState = {**state, **new_state}  # type: ignore[typeddict-item]
    stop = stop or _stop_reason(merged, ctrl, deps.budget)
    sends: list[Send] = []
    if stop is None:
        room = min(deps.budget.concurrency, deps.budget.calls - calls)
        for _ in range(room):
            sel = ctrl.select()
            if sel is None:
                break
            log.info("mcts.select", index=sel.index, parent=sel.parent, action=action_name(sel.action_type),
                     key=sel.key, path=sel.path, ucb=sel.scores, reason=sel.reason)
            inflight[str(sel.index)] = asdict(sel)
            sends.append(Send("expand", ExpandInput(
                selection=asdict(sel), parent=_parent_view(ctrl.nodes[sel.parent]), known=dict(ctrl.known),
                feedback_failures=ctrl.feedback_failures,
                turns_left=max(1, deps.budget.calls - calls - len(sends)))))
        if not sends:
            stop = "nothing left to expand"
    update = {**new_state, "controller": ctrl.to_dict(), "inflight": inflight, "results": Overwrite([]),
              "stop": stop}
    log.info("mcts.controller", seconds=round(time.perf_counter() - t_ctrl, 6), dispatched=len(sends),
             nodes=len(ctrl.nodes))
    if sends:
        return Command(update=update, goto=sends)
    best = ctrl.best_node
    log.info("run.end", stop=stop, calls=calls, best=best.id if best else None,
             accuracy=round(best.score, 6) if best else None)
    if deps.plan_episodes > 0 and best is not None and best.program and state.get("plan") is None:
        return Command(update=update, goto="planner")
    return Command(update=update, goto="__end__")


async def planner(state: SearchState, runtime: Runtime[SearchDeps]) -> dict[str, Any]:
    """The planner agent: the best program acts in the real environment (sandboxed, like every program)."""
    from cwm.planning.agent import PlanConfig, plan
    from cwm.planning.models import ModelFailed

    deps = runtime.context
    best = load_controller(state["controller"]).best_node
    assert best is not None and best.program is not None and deps.env_id is not None
    cfg = PlanConfig(env=deps.env_id, model="program", episodes=deps.plan_episodes, seed=deps.seed,
                     env_kwargs=dict(deps.env_kwargs or {}))
    try:
        result = await asyncio.wait_for(plan(cfg, code=best.program, sandbox=deps.agents.sandbox),
                                        timeout=deps.plan_timeout_s)  # the program's session closes on expiry
    except ModelFailed as exc:
        result = {"error": exc.error.to_json(), "returns": [], "mean_return": None, "normalized_return": None}
    except TimeoutError:
        result = {"error": {"kind": "timeout", "message": f"planning did not finish within "
                            f"{deps.plan_timeout_s:g} s; the program may loop on states the data never showed"},
                  "returns": [], "mean_return": None, "normalized_return": None}
    log.info("plan.result", node=best.id, returns=result.get("returns"), mean_return=result.get("mean_return"),
             normalized_return=result.get("normalized_return"), error=result.get("error"))
    return {"plan": result}


async def expand(inp: ExpandInput, runtime: Runtime[SearchDeps]) -> dict[str, Any]:
    sel = inp["selection"]
    try:
        result, meta = await run_expansion(runtime.context.agents, sel["action_type"], int(sel["index"]),
                                           inp["parent"], known=inp.get("known") or {},
                                           show_failures=int(inp.get("feedback_failures", 1)),
                                           turns_left=inp.get("turns_left"))
    except LLMError as exc:
        return {"results": [{"index": sel["index"], "llm_error": str(exc), "meta": {}}]}
    except Exception as exc:
        log.error("expand.failed", index=sel["index"], error=repr(exc)[:500])
        result, meta = ExpansionResult(None, 0.0, True, error=f"internal error while scoring: {exc!r}"[:2000]), {}
    return {"results": [{"index": sel["index"], "result": asdict(result), "meta": meta}]}


def build_graph() -> StateGraph[SearchState, SearchDeps, SearchState, SearchState]:
    g: StateGraph[SearchState, SearchDeps, SearchState, SearchState] = StateGraph(
        SearchState, context_schema=SearchDeps)
    g.add_node("controller", controller, destinations=("expand", "planner", END))
    g.add_node("expand", expand)  # type: ignore[call-overload]  # a Send payload, not the graph state
    g.add_node("planner", planner)
    g.add_edge(START, "controller")
    g.add_edge("expand", "controller")
    g.add_edge("planner", END)
    return g
