"""Every constructor option the seed lacks is in docs/migrating.md's table; the call-creation
options are named in the README."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ultravox_fsm import RealtimeModel

ROOT = Path(__file__).resolve().parents[2]
CALL_OPTIONS = (
    "agent_id",
    "template_context",
    "throttle",
    "server_tools",
    "recording_enabled",
    "join_timeout",
)


def test_every_new_option_has_a_row_in_the_migration_guide() -> None:
    seed = pytest.importorskip("livekit.plugins.ultravox")
    ours = set(inspect.signature(RealtimeModel.__init__).parameters)
    new = ours - set(inspect.signature(seed.RealtimeModel.__init__).parameters)
    table = (ROOT / "docs" / "migrating.md").read_text().split("## New options", 1)[1]
    assert [name for name in sorted(new) if f"| `{name}` |" not in table] == []


def test_the_readme_names_the_call_creation_options() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [name for name in CALL_OPTIONS if f"`{name}`" not in readme] == []
