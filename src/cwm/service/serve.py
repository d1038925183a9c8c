"""Starting the service: address checks, the bearer token, and a graceful stop on SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

from cwm.errors import CwmError
from cwm.service.app import Service, ServiceConfig, is_loopback, load_or_create_token


def _announce(message: str) -> None:
    sys.stderr.write(f"cwm serve: {message.strip()}\n")


def serve(host: str, port: int, data: Path, *, max_runs: int, llm: str, allow_llm: tuple[str, ...],
          llm_concurrency: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM; running searches stop at their last checkpoint and resume at next start."""
    from cwm.agents.llm.spec import parse_provider

    for rule in (llm, *allow_llm):
        if not rule.startswith(("http://", "https://")) and ":" in rule:
            parse_provider(rule)  # a typo in a provider string fails now, not at the first request
    token = None
    if not is_loopback(host):
        token, created = load_or_create_token(data)
        if created:
            sys.stderr.write(f"cwm serve: bearer token (stored in {data / 'token'}, mode 0600; shown once):\n"
                             f"{token}\n")
        else:
            sys.stderr.write(f"cwm serve: {host} is not loopback; requests need the bearer token in "
                             f"{data / 'token'}\n")
    service = Service(ServiceConfig(data=data, default_llm=llm, max_runs=max_runs, allow_llm=allow_llm,
                                    token=token, llm_concurrency=llm_concurrency))
    try:
        web.run_app(service.app(), host=host, port=port, access_log=None, shutdown_timeout=10,
                    print=_announce)
    except OSError as exc:
        raise CwmError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       hint="choose another --port, or stop the process using it") from exc
