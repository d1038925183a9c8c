"""`cwm show` on the directory of a real search (scripted loopback LLM, real sandbox, real checkpoints)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from itertools import cycle
from pathlib import Path

import pytest

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.cli import main
from cwm.graph.run import RunConfig, synthesize
from cwm.show import derive_curve, load_run
from fake_llm import fenced

# generate -> AttributeError; the fixes and improvements then cycle through imperfect and perfect programs
SCRIPT = ["name_error", "weak_force", "never_done", "good", "wrong_reward"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("show") / "run"
    names = cycle(SCRIPT)

    def script(body: dict) -> Reply:
        return fenced(next(names), improve="## Correct code" in body["messages"][-1]["content"])

    async def go() -> None:
        async with FakeLLMServer(script) as server:
            await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=5), out)

    asyncio.run(go())
    return out


def test_table_lists_every_node_with_its_parent_action_score_and_error(run_dir: Path, capsys) -> None:
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    tree = json.loads((run_dir / "tree.json").read_text(encoding="utf-8"))
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    rows = out.split("\n")[2:2 + len(tree["nodes"])]
    assert len(rows) == len(tree["nodes"]) == summary["nodes"] + 1
    for node, row in zip(tree["nodes"], rows, strict=True):
        cells = row.split()
        assert cells[0].rstrip("*") == str(node["id"])
        assert cells[1] == ("-" if node["parent"] is None else str(node["parent"]))
        assert row.startswith(f"{node['id']:>4}*") == (node["id"] == summary["best_node"])
        if node["action"] != "root":
            assert cells[3] == f"{node['score']:.4f}"
    assert "AttributeError" in rows[1]  # the first program reads a misspelled attribute
    assert f"accuracy {summary['accuracy']:.4f}" in out


def test_json_rows_and_curve_agree_with_the_run(run_dir: Path, capsys) -> None:
    assert main(["show", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in data["nodes"]] == list(range(summary["nodes"] + 1))
    assert data["best_node"] == summary["best_node"]
    assert len(data["curve"]) == summary["search_calls"]
    assert data["curve"][-1]["best"] == pytest.approx(summary["accuracy"])
    bests = [p["best"] for p in data["curve"]]
    assert bests == sorted(bests)  # the best so far never falls


def test_curve_is_rebuilt_from_the_tree_when_the_summary_is_missing(run_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(run_dir / "tree.json", partial / "tree.json")
    derived = load_run(partial)
    assert derived.summary is None
    full = load_run(run_dir)
    tree = json.loads((run_dir / "tree.json").read_text(encoding="utf-8"))
    assert derived.curve == derive_curve(tree["nodes"])
    assert [p["best"] for p in derived.curve] == pytest.approx([p["best"] for p in full.curve])
    assert derived.best == full.best


def test_plot_writes_a_png(run_dir: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "curve.png"
    assert main(["show", str(run_dir), "--plot", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert str(png) in capsys.readouterr().out


def test_plot_without_matplotlib_is_one_line(run_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["show", str(run_dir), "--plot", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib" in err and "cwm[plot]" in err


def test_a_directory_without_a_tree_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["show", str(tmp_path)]) == 2
    assert "no search tree" in capsys.readouterr().err
