"""The README's diagram, the CLI and the demo command stay true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ultravox_fsm.cli import main
from ultravox_fsm.diagram import dot, mermaid
from ultravox_fsm.states import TABLES, State, Trigger

ROOT = Path(__file__).resolve().parents[2]


def test_readme_diagram_is_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)\n```", readme, re.S)
    assert [b.strip() for b in blocks] == [mermaid(table=t).strip() for t in TABLES]


def test_diagrams_name_every_state_and_highlight_the_current_one() -> None:
    text = mermaid(State.SPEAKING, full=True)
    for state in State:
        assert f'state "{state.value}"' in text
    for trigger in Trigger:
        assert trigger.value in text
    assert "Class speaking s_active" in text
    assert (
        "fillcolor=darksalmon"
        in dot(State.TOOL_PENDING).split('"tool_pending" [')[1].split("\n")[0]
    )


def test_cli_writes_diagrams_and_explains_what_graphviz_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fsm.dot"
    assert main(["diagram", "--format", "dot", "-o", str(out)]) == 0
    assert out.read_text().startswith("digraph turn {")
    monkeypatch.setattr("shutil.which", lambda _: None)
    assert main(["diagram", "--format", "svg"]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err


def test_demo_command_runs_every_step_and_keeps_one_recording(tmp_path: Path) -> None:
    for _ in range(2):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ultravox_fsm",
                "demo",
                "--text-only",
                "--record",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "user       What time is checkout?" in done.stdout
    assert "<instruction>" not in done.stdout
    assert "FAIL" not in done.stdout
    assert "  skip barge-in\n" in done.stdout
    assert done.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.html", "demo.jsonl"]
    assert main(["replay", str(tmp_path / "demo.jsonl")]) == 0
