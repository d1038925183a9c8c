"""The tools cwm ships, registered as per-run factories (imported by ``cwm.tools.box`` on first use)."""

from __future__ import annotations

from cwm.tools.analysis import RunAnalysis
from cwm.tools.box import ToolDeps, register_tool
from cwm.tools.check import CheckProgram
from cwm.tools.transitions import DescribeEnv, ShowTransitions


def _check(deps: ToolDeps) -> CheckProgram:
    return CheckProgram(deps.sandbox, deps.transitions, limits=deps.limits, max_failures=10)


register_tool("check_program", _check)
register_tool("run_analysis", RunAnalysis)
register_tool("show_transitions", ShowTransitions)
register_tool("describe_env", DescribeEnv)
