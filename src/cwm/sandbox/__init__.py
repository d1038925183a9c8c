"""Running untrusted programs: a warm fork-server inside isolation layers, and scoring outside it."""

from cwm.sandbox.evaluate import ScoreReport, check_program, evaluate
from cwm.sandbox.worker import (
           IOSpec,
           Limits,
           ProgramError,
           ProgramSession,
           Sandbox,
           SandboxConfig,
           SessionFailed,
)

__all__ = ["IOSpec", "Limits", "ProgramError", "ProgramSession", "Sandbox", "SandboxConfig", "ScoreReport",
           "SessionFailed", "check_program", "evaluate"]
