"""The web page in a real headless Chromium: it loads, the tree grows while a scripted run proceeds, clicking a
node shows its program, and the console stays clean. A screenshot is kept in test-artifacts/."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest
from test_restart import _call, _free_port, _start

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from fake_llm import VARIANTS, serve_in_thread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/bootstrap.sh dev installs it)"),
]


def test_page_shows_the_tree_growing_live(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (dev extra)")
    budget = 6
    script = [Reply(f"```python\n{VARIANTS[n]}```", delay=0.6) for n in
              ("name_error", "weak_force", "never_done", "weak_force", "wrong_reward")]
    with serve_in_thread(FakeLLMServer(script, default=Reply(f"```python\n{VARIANTS['good']}```", delay=0.6))) as llm:
        port = _free_port()
        server = _start(tmp_path / "data", port)
        try:
            env = _call(port, "POST", "/v1/envs", {"gym_id": "CartPole-v1"})
            run = _call(port, "POST", "/v1/runs", {"env": env["id"], "llm": f"openai:fake@{llm.base_url}",
                                                   "budget": budget})
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/?run={run['id']}")
                page.wait_for_selector("#runs tbody tr")
                counts = []
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    counts.append(page.locator("svg#tree .node").count())
                    if page.locator("#run-status").inner_text() in ("done", "failed"):
                        break
                    time.sleep(0.25)
                assert page.locator("#run-status").inner_text() == "done"
                final_nodes = page.locator("svg#tree .node").count()
                assert final_nodes >= 2  # the root and at least one expansion
                growth = sorted(set(counts))
                assert len(growth) >= 3, counts  # seen growing while the run proceeded, not only at the end
                assert page.locator("svg#curve polyline").count() == 1
                page.locator("svg#tree .node[data-node='1']").click()
                page.wait_for_selector("#node-card:not([hidden])")
                for box in ("node-program", "final-program"):
                    page.wait_for_function(
                        f"document.getElementById('{box}').textContent.includes('class Environment')")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "service-page.png"), full_page=True)
                browser.close()
            assert errors == []
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
