"""docs/testing.md's example test file and pytest configuration, run exactly as a user would
copy them: in a fresh directory, in a separate pytest process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TRANSPORT

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, f"docs/testing.md should hold one {language} block"
    return str(blocks[0])


@pytest.mark.skipif(
    TRANSPORT == "lean",
    reason="the guide's files run in their own pytest process, with the default transport "
    "(aiohttp): the suite's aiohttp pass runs them",
)
def test_the_testing_guide_example_passes_as_written(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(block("toml"))
    (tmp_path / "test_concierge.py").write_text(block("python"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("2 passed")
    assert "Unclosed" not in done.stdout + done.stderr
