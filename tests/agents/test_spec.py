import pytest

from cwm.agents.llm import PriceTable, parse_provider
from cwm.errors import CwmError


@pytest.mark.parametrize(("text", "api", "model", "url", "key"), [
    ("openai:gpt-4o", "openai", "gpt-4o", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("openai:qwen2.5-coder@http://localhost:8000/v1", "openai", "qwen2.5-coder", "http://localhost:8000/v1",
     "CWM_LLM_API_KEY"),
    ("anthropic:claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", "https://api.anthropic.com/v1",
     "ANTHROPIC_API_KEY"),
    ("ollama:qwen2.5-coder", "openai", "qwen2.5-coder", "http://127.0.0.1:11434/v1", "CWM_LLM_API_KEY"),
    ("vllm:Qwen/Qwen2.5-Coder-32B", "openai", "Qwen/Qwen2.5-Coder-32B", "http://127.0.0.1:8000/v1",
     "CWM_LLM_API_KEY"),
    ("local", "local", "default", None, None),
    ("local:/models/x.gguf", "local", "/models/x.gguf", None, None),
])
def test_provider_strings(text, api, model, url, key):
    spec = parse_provider(text)
    assert (spec.api, spec.model, spec.key_env) == (api, model, key)
    if url:
        assert spec.base_url == url


@pytest.mark.parametrize(("text", "needle"), [("gpt-4o", "no model"), ("openai:", "empty model"),
                                              ("foo:bar", "unknown provider"), ("openai:m@ftp://x", "http")])
def test_bad_provider_strings(text, needle):
    with pytest.raises(CwmError, match=needle):
        parse_provider(text)


def test_prices_by_longest_prefix():
    t = PriceTable()
    assert t.lookup("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert t.lookup("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert t.cost("my-local-model", 1000, 1000) is None  # unknown, never a silent 0
