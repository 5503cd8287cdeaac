"""The call viewer in a real headless Chromium: the diagram (no overlapping edge labels), the
timeline with its legend and the transcript (typed turns, tool calls and results) render, a click
on the timeline shows the state at that moment, and a screenshot is saved.

Driven over the DevTools protocol with aiohttp (no extra dependency). Skipped, loudly, only
where no Chromium can be found (`.ci/run` installs Debian's `chromium`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ultravox_fsm import trace
from ultravox_fsm.states import State
from ultravox_fsm.viewer import render_html

from ..unit.test_trace import record_session

BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="NO BROWSER FOUND: install Debian's chromium to run the viewer test"
)


class DevTools:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == call_id:
                assert "error" not in msg, msg
                return msg["result"]  # type: ignore[no-any-return]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


# Pairs of edge labels whose boxes intersect in the drawn diagram.
OVERLAPPING_LABELS = """(() => {
  const boxes = [...document.querySelectorAll('.edge-label')].map(l => l.getBBox());
  let n = 0;
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach(b => {
    if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height)
      n++;
  }));
  return n;
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_viewer_renders_and_scrubs_in_chromium(tmp_path: Path) -> None:
    trace_file = tmp_path / "call.jsonl"
    record_session(trace_file)
    page = tmp_path / "call.html"
    page.write_text(render_html(trace.read(trace_file).records))
    port = free_port()
    profile = tempfile.mkdtemp()
    assert BROWSER is not None
    proc = subprocess.Popen(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            targets: list[dict[str, Any]] = []
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json") as resp:
                        targets = [t for t in await resp.json() if t["type"] == "page"]
                    if targets:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"]) as ws:
                tools = DevTools(ws)
                await tools.call("Page.enable")
                await tools.call("Page.navigate", url=page.as_uri())
                for _ in range(50):
                    if await tools.js("document.readyState") == "complete":
                        break
                    await asyncio.sleep(0.1)
                assert await tools.js("document.querySelectorAll('.state-node').length") == 7
                assert await tools.js("document.querySelectorAll('.edge').length") > 10
                assert await tools.js("document.querySelectorAll('.edge.unused').length") > 0
                assert await tools.js("document.querySelectorAll('#timeline rect').length") > 3
                assert await tools.js("document.querySelectorAll('#events li').length") > 3
                events = await tools.js(
                    "[...document.querySelectorAll('#events li')].map(li => li.textContent)"
                )
                assert any("user: What time is checkout? (typed)" in e for e in events)
                assert any('tool: call lookup(city="Paris")' in e for e in events)
                assert any("tool: result: {}" in e for e in events)
                assert not any(e.endswith("agent: ") for e in events)
                assert not any("first output 0 ms" in e for e in events)
                legend = await tools.js("document.getElementById('legend').textContent")
                assert all(s.value in legend for s in State) and "tool call/result" in legend
                assert await tools.js(OVERLAPPING_LABELS) == 0
                assert (
                    await tools.js("document.getElementById('current-state').textContent")
                    == "listening"
                )
                # Click the timeline at the start: the call had not connected yet.
                box = json.loads(
                    await tools.js(
                        "JSON.stringify(document.getElementById('timeline').getBoundingClientRect())"
                    )
                )
                for kind in ("mousePressed", "mouseReleased"):
                    await tools.call(
                        "Input.dispatchMouseEvent",
                        type=kind,
                        x=box["x"] + 1,
                        y=box["y"] + 20,
                        button="left",
                        clickCount=1,
                    )
                assert (
                    await tools.js("document.getElementById('current-state').textContent") == "idle"
                )
                assert (
                    await tools.js("document.querySelector('.state-node.current').dataset.state")
                    == "idle"
                )
                shot = await tools.call("Page.captureScreenshot", format="png")
                (tmp_path / "viewer.png").write_bytes(base64.b64decode(shot["data"]))
                Path("out").mkdir(exist_ok=True)
                shutil.copy(tmp_path / "viewer.png", "out/viewer.png")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
