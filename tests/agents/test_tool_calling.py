"""Tool calling through the real client against the scripted loopback server, on both wire APIs, streamed
and not: the model asks for a tool, the client sends the result back, the model answers. Also what a
model gets wrong (arguments that are not JSON), and that cache and cassettes replay tool calls."""

from __future__ import annotations

import json

import pytest

from cwm.agents.llm import (
    Cassette,
    LLMClient,
    LLMError,
    Message,
    ResponseCache,
    SamplingParams,
    ToolCall,
    ToolSpec,
    TransportConfig,
    call_key,
    parse_provider,
)
from cwm.agents.llm.fake_server import FakeLLMServer, Reply

FAST = TransportConfig(retries=2, backoff_base=0.01, backoff_cap=0.05, read_timeout=5, call_timeout=10)
CHECK = ToolSpec("check_program", "Run a candidate program against the training transitions.",
                 {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]})
SHOW = ToolSpec("show_transitions", "Show training transitions by index.",
                {"type": "object", "properties": {"indices": {"type": "array", "items": {"type": "integer"}}}})
MSGS = [Message("system", "You write Python."), Message("user", "Fix this program.")]
CODE = "class Environment:\n    pass\n"


def client(server: FakeLLMServer, api: str, **kw) -> LLMClient:
    kw.setdefault("transport", FAST)
    return LLMClient.from_string(f"{api}:fake-model@{server.base_url}", **kw)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_two_turn_tool_loop(api, stream):
    script = [Reply("", tool_calls=[("check_program", {"code": CODE}), ("show_transitions", {"indices": [3, 4]})],
                    usage=(40, 12)),
              Reply("The program is fixed.", usage=(90, 6))]
    async with FakeLLMServer(script) as server:
        c = client(server, api, stream=stream)
        first = await c.complete(MSGS, tools=[CHECK, SHOW])
        assert [(t.name, t.arguments) for t in first.tool_calls] == [
            ("check_program", {"code": CODE}), ("show_transitions", {"indices": [3, 4]})]
        assert first.finish_reason == ("tool_use" if api == "anthropic" else "tool_calls")
        assert all(t.id and t.valid for t in first.tool_calls) and first.text == ""
        history = [*MSGS, first.as_message(),
                   Message("tool", "2 of 10 transitions wrong", tool_call_id=first.tool_calls[0].id,
                           name="check_program"),
                   Message("tool", "[3] s=..., [4] s=...", tool_call_id=first.tool_calls[1].id,
                           name="show_transitions")]
        second = await c.complete(history, tools=[CHECK, SHOW])
    assert second.text == "The program is fixed." and second.tool_calls == ()
    assert (first.usage.input_tokens, second.usage.output_tokens) == (40, 6)
    ids = [t.id for t in first.tool_calls]
    assert server.offered_tools(0) == server.offered_tools(1) == ["check_program", "show_transitions"]
    assert server.tool_results(0) == [] and server.tool_results(1) == [
        (ids[0], "2 of 10 transitions wrong"), (ids[1], "[3] s=..., [4] s=...")]
    offered, sent = server.requests[0]["body"], server.requests[1]["body"]
    if api == "openai":
        assert offered["tools"][0] == {"type": "function", "function": {
            "name": "check_program", "description": CHECK.description, "parameters": CHECK.parameters}}
        assert offered["tool_choice"] == "auto"
        assistant, r1, r2 = sent["messages"][2:]
        assert [c["id"] for c in assistant["tool_calls"]] == ids
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"code": CODE}
        assert (r1["role"], r1["tool_call_id"], r1["content"]) == ("tool", ids[0], "2 of 10 transitions wrong")
        assert (r2["role"], r2["tool_call_id"]) == ("tool", ids[1])
    else:
        assert offered["tools"][1] == {"name": "show_transitions", "description": SHOW.description,
                                       "input_schema": SHOW.parameters}
        assert offered["tool_choice"] == {"type": "auto"}
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]  # results merged in one turn
        uses = sent["messages"][1]["content"]
        assert [(b["type"], b["id"], b["input"]) for b in uses] == [
            ("tool_use", ids[0], {"code": CODE}), ("tool_use", ids[1], {"indices": [3, 4]})]
        results = sent["messages"][2]["content"]
        assert [(b["type"], b["tool_use_id"]) for b in results] == [("tool_result", i) for i in ids]
        assert results[0]["content"] == "2 of 10 transitions wrong"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_text_beside_a_tool_call(api, stream):
    async with FakeLLMServer([Reply("Let me check first.", tool_calls=[("check_program", {"code": "x = 1"})])]) \
            as server:
        out = await client(server, api, stream=stream).complete(MSGS, tools=[CHECK])
    assert out.text == "Let me check first."
    assert [(t.name, t.arguments) for t in out.tool_calls] == [("check_program", {"code": "x = 1"})]


@pytest.mark.parametrize("stream", [False, True])
async def test_invalid_json_arguments_are_kept_raw(stream):
    broken = '{"code": "print(1)'
    async with FakeLLMServer([Reply("", tool_calls=[("check_program", broken)]), Reply("ok")]) as server:
        c = client(server, "openai", stream=stream)
        out = await c.complete(MSGS, tools=[CHECK])
        (call,) = out.tool_calls
        assert (call.arguments, call.raw_arguments, call.valid) == ({}, broken, False)
        await c.complete([*MSGS, out.as_message(),
                          Message("tool", "arguments are not JSON", tool_call_id=call.id, name=call.name)],
                         tools=[CHECK])
    # the history repeats what the model wrote, not a silently repaired version
    echoed = server.requests[1]["body"]["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert echoed == broken


def test_tool_call_parsing():
    assert ToolCall.parse("a", "f", "").arguments == {} and ToolCall.parse("a", "f", "").valid
    assert ToolCall.parse("a", "f", "[1, 2]").valid is False  # JSON, but not an object
    good = ToolCall.parse("a", "f", '{"x": 1}')
    assert (good.arguments, good.valid) == ({"x": 1}, True)


async def test_tool_choice_names_a_tool_or_a_mode():
    async with FakeLLMServer(default=Reply("", tool_calls=[("check_program", {"code": ""})])) as server:
        await client(server, "openai").complete(MSGS, tools=[CHECK, SHOW], tool_choice="check_program")
        await client(server, "anthropic").complete(MSGS, tools=[CHECK, SHOW], tool_choice="required")
        with pytest.raises(LLMError, match="tool_choice"):
            await client(server, "openai").complete(MSGS, tools=[CHECK], tool_choice="no_such_tool")
        with pytest.raises(LLMError, match="unique"):
            await client(server, "openai").complete(MSGS, tools=[CHECK, CHECK])
    assert server.requests[0]["body"]["tool_choice"] == {"type": "function", "function": {"name": "check_program"}}
    assert server.requests[1]["body"]["tool_choice"] == {"type": "any"}
    assert len(server.requests) == 2  # bad tool arguments never reach the server


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_cache_replays_tool_calls(tmp_path, api):
    cache = ResponseCache(tmp_path / "cache")
    async with FakeLLMServer([Reply("", tool_calls=[("check_program", {"code": CODE})])]) as server:
        paid = await client(server, api, cache=cache).complete(MSGS, tools=[CHECK])
        again = await client(server, api, cache=cache).complete(MSGS, tools=[CHECK])
    assert len(server.requests) == 1 and again.cached and not paid.cached
    assert again.tool_calls == paid.tool_calls and again.tool_calls[0].arguments == {"code": CODE}


async def test_cassette_replays_a_tool_loop_without_a_server(tmp_path):
    path = tmp_path / "tools.jsonl"

    async def loop(c: LLMClient) -> list[str]:
        first = await c.complete(MSGS, tools=[CHECK])
        call = first.tool_calls[0]
        second = await c.complete([*MSGS, first.as_message(),
                                   Message("tool", "all good", tool_call_id=call.id, name=call.name)], tools=[CHECK])
        return [call.id, call.name, json.dumps(call.arguments), second.text]

    async with FakeLLMServer([Reply("", tool_calls=[("check_program", {"code": CODE})]), Reply("done")]) as server:
        recorded = await loop(client(server, "anthropic", cassette=Cassette(path, "record")))
        url = server.base_url
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries[0]["request"]["tools"][0]["name"] == "check_program"
    assert entries[0]["response"]["tool_calls"][0]["name"] == "check_program"
    replay = LLMClient.from_string(f"anthropic:fake-model@{url}", cassette=Cassette(path, "replay"), transport=FAST)
    assert await loop(replay) == recorded and recorded[3] == "done"
    assert all(r.cached for r in replay.accounting.records)


def test_cache_keys_differ_by_tools_and_choice():
    spec = parse_provider("openai:gpt-4o")
    p = SamplingParams()
    keys = {call_key(spec, MSGS, p, 0), call_key(spec, MSGS, p, 0, [CHECK]), call_key(spec, MSGS, p, 0, [SHOW]),
            call_key(spec, MSGS, p, 0, [CHECK, SHOW]), call_key(spec, MSGS, p, 0, [CHECK], "required"),
            call_key(spec, MSGS, p, 0, [CHECK], "check_program")}
    assert len(keys) == 6
    changed = ToolSpec(CHECK.name, CHECK.description + " Returns a report.", CHECK.parameters)
    assert call_key(spec, MSGS, p, 0, [changed]) != call_key(spec, MSGS, p, 0, [CHECK])
    call = ToolCall("c1", "check_program", {"code": "x"}, '{"code": "x"}')
    with_result = [*MSGS, Message("assistant", "", tool_calls=(call,)), Message("tool", "ok", tool_call_id="c1")]
    other_result = [*with_result[:-1], Message("tool", "failed", tool_call_id="c1")]
    assert call_key(spec, with_result, p, 0, [CHECK]) != call_key(spec, other_result, p, 0, [CHECK])


def test_keys_of_calls_without_tools_are_unchanged():
    """Hashes computed before tool calling existed: caches and cassettes recorded then still replay."""
    msgs = [Message("system", "Be brief."), Message("user", "Write a CartPole model.")]
    assert call_key(parse_provider("openai:gpt-4o"), msgs, SamplingParams(), 0) == \
        "52b35eeb7f0b21720030244e64cdf8f4853db17c09df37514893dfa9967f4a83"
    turns = [Message("user", "hi"), Message("assistant", "hello"), Message("user", "again")]
    assert call_key(parse_provider("anthropic:claude-x@http://127.0.0.1:9/v1"), turns,
                    SamplingParams(temperature=1.0, stop=("END",)), 3) == \
        "743779d502a755f18405fcb68a6fba0a545baa6460eb680496c01f83e33e2929"
    # the default tool_choice with no tools is the same call as before
    assert call_key(parse_provider("openai:gpt-4o"), msgs, SamplingParams(), 0, (), "auto") == \
        call_key(parse_provider("openai:gpt-4o"), msgs, SamplingParams(), 0)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_invalid_arguments_on_both_apis(api, stream):
    broken = "{'code': 1}"  # Python, not JSON
    async with FakeLLMServer([Reply("", tool_calls=[("check_program", broken)])]) as server:
        (call,) = (await client(server, api, stream=stream).complete(MSGS, tools=[CHECK])).tool_calls
    assert (call.arguments, call.raw_arguments, call.valid) == ({}, broken, False)


def test_parallel_calls_sharing_a_stream_index_stay_apart():
    """Ollama numbers every call of a parallel batch 0 and distinguishes them by id alone."""
    from cwm.agents.llm.providers import OpenAIAdapter, StreamState

    adapter = OpenAIAdapter(parse_provider("ollama:m"), "http://127.0.0.1:1/v1")
    state = StreamState()
    on_event = adapter.stream_handler(state)

    def piece(**kw):
        return {"choices": [{"index": 0, "delta": {"tool_calls": [dict(index=0, **kw)]}}]}

    for ev in [piece(id="a", function={"name": "check_program", "arguments": '{"code"'}),
               piece(function={"arguments": ': "x"}'}),
               piece(id="b", function={"name": "show_transitions", "arguments": '{"indices": [1]}'})]:
        on_event(ev)
    calls = adapter.from_stream(state, MSGS).tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "check_program", {"code": "x"}), ("b", "show_transitions", {"indices": [1]})]


async def test_a_last_turn_without_tools_after_a_tool_loop():
    """Anthropic refuses tool blocks in a request offering no tools: the history goes as text instead;
    OpenAI takes the tool turns as they are."""
    call = ToolCall("c1", "check_program", {"code": "x"}, '{"code": "x"}')
    history = [*MSGS, Message("assistant", "", tool_calls=(call,)),
               Message("tool", "2 wrong", tool_call_id="c1", name="check_program"),
               Message("user", "Now write the program.")]
    async with FakeLLMServer(default=Reply("done")) as server:
        assert (await client(server, "anthropic").complete(history)).text == "done"
        assert (await client(server, "openai").complete(history)).text == "done"
    anthropic, openai = (r["body"] for r in server.requests)
    assert "tools" not in anthropic
    blob = json.dumps(anthropic["messages"])
    assert "tool_use" not in blob and "tool_result" not in blob
    assert [m["role"] for m in anthropic["messages"]] == ["user", "assistant", "user"]
    assert anthropic["messages"][1]["content"] == [{"type": "text", "text": '[called check_program({"code": "x"})]'}]
    assert [b["text"] for b in anthropic["messages"][2]["content"]] == ["[result of check_program]\n2 wrong",
                                                                        "Now write the program."]
    assert [m["role"] for m in openai["messages"]] == ["system", "user", "assistant", "tool", "user"]
