"""No run request can make the server hand a hosted provider's API key to a port of the request's choosing."""

from __future__ import annotations

from pathlib import Path

from cwm.service.app import ServiceConfig


def _cfg(*allow: str) -> ServiceConfig:
    return ServiceConfig(data=Path("/nonexistent"), default_llm="openai:gpt-4o", allow_llm=allow)


def test_loopback_urls_are_allowed_only_with_the_self_hosted_key():
    cfg = _cfg()
    assert cfg.llm_refusal("openai:m@http://127.0.0.1:8000/v1") is None  # $CWM_LLM_API_KEY, for own servers
    assert cfg.llm_refusal("vllm:qwen@http://localhost:8000/v1") is None
    why = cfg.llm_refusal("anthropic:claude@http://127.0.0.1:9999")
    assert why is not None and "$ANTHROPIC_API_KEY" in why and "--allow-llm http://127.0.0.1:9999" in why


def test_an_operator_can_allow_a_hosted_providers_proxy_by_url():
    cfg = _cfg("http://127.0.0.1:9999")
    assert cfg.llm_refusal("anthropic:claude@http://127.0.0.1:9999/v1") is None
    assert cfg.llm_refusal("anthropic:claude@http://127.0.0.1:9998/v1") is not None  # another port still refused


def test_a_url_with_credentials_never_passes_as_loopback():
    assert _cfg().llm_refusal("openai:m@http://127.0.0.1:1@evil.example/v1") is not None
