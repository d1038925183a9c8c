"""Registering node types: Python, an installed package's entry point, MODULE:ATTR; and `cwm nodes`."""

from __future__ import annotations

import json

import pytest

import cwm
from cwm import cli
from cwm.errors import CwmError
from cwm.nodes import NodeBudget, registry
from cwm.nodes.registry import registered_nodes, resolve_node, run_nodes


@pytest.fixture
def clean_registry(monkeypatch):
    """Registrations made by a test vanish after it (the registry is process-wide, like gymnasium's)."""
    monkeypatch.setattr(registry, "_NODES", dict(registry._NODES))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch, clean_registry):
    """A tiny installed distribution declaring a node in the ``cwm.nodes`` entry-point group."""
    (tmp_path / "cwm_testplugin.py").write_text(
        "from cwm.nodes import NodeBudget\n"
        "class Echo:\n"
        "    '''Return the parent program unchanged.'''\n"
        "    prior = 0.3\n"
        "    budget = NodeBudget(max_turns=2, max_tool_calls=1)\n"
        "    async def run(self, ctx):\n"
        "        return ctx.parent.program if ctx.parent else None\n", encoding="utf-8")
    info = tmp_path / "cwm_testplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cwm-testplugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[cwm.nodes]\necho = cwm_testplugin:Echo\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._loaded["entry_points"] = False


def test_builtins_keep_their_checkpoint_letters():
    nodes = registered_nodes()
    assert [nodes[n].code for n in ("generate", "improve", "fix", "analyze")] == ["g", "i", "f", "analyze"]
    assert not nodes["generate"].needs_parent and nodes["improve"].needs_parent
    assert list(run_nodes([])) == ["g", "i", "f"]
    assert list(run_nodes(["analyze", "fix"])) == ["g", "i", "f", "analyze"]


async def test_entry_point_plugin_is_registered_and_runs(installed_plugin):
    spec = registered_nodes()["echo"]
    assert (spec.prior, spec.budget, spec.source) == (0.3, NodeBudget(2, 1), "entry point cwm_testplugin:Echo")
    assert spec.summary == "Return the parent program unchanged."
    ctx = type("Ctx", (), {"parent": type("P", (), {"program": "x = 1"})()})()
    assert await spec.run(ctx) == "x = 1"  # type: ignore[arg-type]
    assert resolve_node("echo") is spec


def test_cwm_nodes_lists_builtins_and_plugins(installed_plugin, capsys):
    assert cli.main(["nodes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows)[:4] == ["generate", "improve", "fix", "analyze"]
    assert rows["echo"]["max_turns"] == 2 and rows["analyze"]["max_tool_calls"] > 0


def test_register_node_from_the_top_level_package(clean_registry):
    async def rewrite(ctx):
        return None

    spec = cwm.register_node("rewrite", rewrite, prior=0.7, needs_parent=False)
    assert registered_nodes()["rewrite"] is spec and spec.action().needs_parent is False
    for bad in ("x", "a#b", "mod:attr", "two words"):
        with pytest.raises(CwmError, match="bad node name"):
            cwm.register_node(bad, rewrite)
    with pytest.raises(CwmError, match="not a node"):
        cwm.register_node("thing", 42)


def test_module_attr_reference(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "my_nodes.py").write_text("async def polish(ctx):\n    return None\npolish.prior = 0.9\n",
                                          encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve_node("my_nodes:polish")
    assert (spec.name, spec.prior, spec.source) == ("polish", 0.9, "my_nodes:polish")
    assert "polish" not in registered_nodes()  # loaded for the run, not registered for the process
    for bad in ("my_nodes:nope", "no_such_module_xyz:f", "nosuch"):
        with pytest.raises(CwmError):
            resolve_node(bad)


@pytest.mark.parametrize(("argv", "mention"), [
    (["--node", "nosuch"], "unknown node 'nosuch'"),
    (["--node", "analyze", "--method", "gif-mcts-paper"], "generate, improve and fix only"),
    (["--node", "no_such_module_xyz:f"], "cannot load node"),
])
def test_cli_refuses_bad_nodes_with_one_line(argv, mention, capsys):
    code = cli.main(["synthesize", "--env", "CartPole-v1", "--llm", "openai:x@http://127.0.0.1:9", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and mention in err and "Traceback" not in err
