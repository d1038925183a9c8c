"""``check_program``: score a program against transitions in the sandbox; tracebacks and failures included."""

from __future__ import annotations

from typing import Any

from cwm.envs.dataset import Dataset
from cwm.sandbox.evaluate import ScoreReport, evaluate
from cwm.sandbox.scoring import Metric
from cwm.sandbox.worker import Limits, Sandbox


class CheckProgram:
    name = "check_program"
    description = ("Run a Code World Model program on recorded transitions in the sandbox and report its "
                   "accuracy, the transitions it gets wrong (expected vs predicted) and any traceback.")
    schema: dict[str, Any] = {  # noqa: RUF012 - read-only description of the arguments
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source defining class Environment"}},
        "required": ["code"],
    }

    def __init__(self, sandbox: Sandbox, dataset: Dataset, *, metric: Metric = "cwm",
                 limits: Limits | None = None, max_failures: int = 20) -> None:
        self.sandbox = sandbox
        self.dataset = dataset
        self.metric = metric
        self.limits = limits
        self.max_failures = max_failures

    async def __call__(self, **kwargs: Any) -> ScoreReport:
        code = kwargs.get("code")
        if not isinstance(code, str):
            raise TypeError("check_program needs code: str")
        return await evaluate(self.sandbox, code, self.dataset, metric=self.metric, limits=self.limits,
                              max_failures=self.max_failures)
