#!/usr/bin/env bash
# Mutation testing of the modules that decide results (mutmut), one module at a time, niced, one worker.
# Usage: scripts/mutation.sh [MODULE] [--worktree] [--max-children N] [--list]
# Modules and their covering tests: [tool.cwm.mutation.*] in pyproject.toml. Details: scripts/mutation.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/mutation.py "$@"
