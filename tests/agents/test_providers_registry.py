"""Providers are registrations: a new name works everywhere a provider string is read (client, CLI) and
shows up in the CLI's help and in the errors that list what is accepted."""

from __future__ import annotations

import json

import pytest

from cwm.agents.llm import (
    LLMAuthError,
    LLMClient,
    Message,
    ProviderDefaults,
    ProviderSpec,
    TransportConfig,
    parse_provider,
    provider_names,
    register_provider,
    unregister_provider,
)
from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.errors import CwmError

FAST = TransportConfig(retries=1, backoff_base=0.01, read_timeout=5, call_timeout=10)


@pytest.fixture
def registered():
    """Names registered by a test, removed afterwards so the process-wide registry stays as shipped."""
    names: list[str] = []
    yield names
    for n in names:
        unregister_provider(n)


def test_built_in_names_are_registrations():
    assert set(provider_names()) >= {"openai", "anthropic", "vllm", "ollama", "lmstudio", "llamacpp", "local"}


async def test_a_registered_name_reaches_its_server(registered, monkeypatch):
    async with FakeLLMServer([Reply("from the loopback", usage=(7, 3))]) as server:
        register_provider("loopy", ProviderDefaults("openai", server.base_url, "LOOPY_KEY"), summary="test server")
        registered.append("loopy")
        monkeypatch.setenv("LOOPY_KEY", "sk-loopy")
        spec = parse_provider("loopy:tiny-model")
        assert (spec.name, spec.api, spec.base_url, spec.key_env) == ("loopy", "openai", server.base_url,
                                                                      "LOOPY_KEY")
        out = await LLMClient(spec, transport=FAST).complete([Message("user", "hi")])
    assert out.text == "from the loopback" and out.provider == "loopy"
    req = server.requests[0]
    assert req["body"]["model"] == "tiny-model" and req["headers"]["Authorization"] == "Bearer sk-loopy"


async def test_a_factory_registration_on_the_anthropic_api(registered):
    async with FakeLLMServer([Reply("messages api")]) as server:
        def factory(name: str, rest: str) -> ProviderSpec:
            return ProviderSpec(name, "anthropic", rest or "house-model", server.base_url, None)

        register_provider("house", factory, model_optional=True)
        registered.append("house")
        out = await LLMClient.from_string("house", transport=FAST).complete([Message("user", "hi")])
    assert out.text == "messages api" and server.requests[0]["path"] == "/v1/messages"
    assert server.requests[0]["body"]["model"] == "house-model"


def test_hosted_registration_requires_its_key(registered, monkeypatch):
    register_provider("hosted", ProviderDefaults("openai", "https://api.invalid/v1", "HOSTED_KEY",
                                                 key_required=True))
    registered.append("hosted")
    monkeypatch.delenv("HOSTED_KEY", raising=False)
    with pytest.raises(LLMAuthError, match="HOSTED_KEY"):
        LLMClient.from_string("hosted:m")


def test_names_are_not_taken_twice(registered):
    with pytest.raises(CwmError, match="already registered"):
        register_provider("openai", ProviderDefaults("openai", "http://127.0.0.1:1/v1"))
    with pytest.raises(CwmError, match="must be non-empty"):
        register_provider("a:b", ProviderDefaults("openai", "http://127.0.0.1:1/v1"))
    register_provider("twice", ProviderDefaults("openai", "http://127.0.0.1:1/v1"))
    registered.append("twice")
    register_provider("twice", ProviderDefaults("openai", "http://127.0.0.1:2/v1"), override=True)
    assert parse_provider("twice:m").base_url == "http://127.0.0.1:2/v1"


def test_errors_and_help_list_the_registered_names(registered, capsys):
    from cwm.cli import main

    register_provider("zzplugin", ProviderDefaults("openai", "http://127.0.0.1:1/v1"))
    registered.append("zzplugin")
    with pytest.raises(CwmError) as info:
        parse_provider("nope:m")
    assert "zzplugin" in str(info.value.hint) and "openai" in str(info.value.hint)
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    assert "zzplugin" in " ".join(capsys.readouterr().out.split())


def test_cli_ask_with_a_registered_provider(registered, capsys):
    from cwm.cli import main
    from fake_llm import serve_in_thread

    with serve_in_thread(FakeLLMServer(default=Reply("pong", usage=(3, 1)))) as server:
        register_provider("mine", ProviderDefaults("openai", server.base_url))
        registered.append("mine")
        assert main(["ask", "ping", "--llm", "mine:small", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["text"] for c in out["completions"]] == ["pong"]
    assert main(["ask", "ping", "--llm", "notmine:small"]) == 2


def test_entry_point_plugins_register_on_first_unknown_name(registered, monkeypatch):
    """A package declaring ``[project.entry-points."cwm.providers"] acme = "pkg:ACME"`` adds ``acme:MODEL``."""
    import importlib.metadata as md
    import sys
    import types

    from cwm.agents.llm import spec as spec_module

    module = types.ModuleType("acme_llm_plugin")
    module.ACME = ProviderDefaults("openai", "http://127.0.0.1:9999/v1", "ACME_KEY")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_llm_plugin", module)
    eps = md.EntryPoints([md.EntryPoint("acme", "acme_llm_plugin:ACME", spec_module.ENTRY_POINT_GROUP)])
    monkeypatch.setattr(md, "entry_points", lambda group: eps if group == spec_module.ENTRY_POINT_GROUP else [])
    monkeypatch.setitem(spec_module._PLUGINS, "loaded", False)
    registered.append("acme")
    spec = parse_provider("acme:big-model")
    assert (spec.name, spec.base_url, spec.key_env) == ("acme", "http://127.0.0.1:9999/v1", "ACME_KEY")
    assert "acme" in provider_names()
