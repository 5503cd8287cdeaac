"""The CLI on bad input: one line on stderr, exit status 2, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ultravox_fsm.cli import main

from .test_trace import record_session


def one_line_error(capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(prefix), err
    return err


def test_unwritable_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram", "-o", "/nonexistent/x"]) == 2
    one_line_error(capsys, "ultravox-fsm diagram: cannot write /nonexistent/x: No such file")
    trace = tmp_path / "call.jsonl"
    record_session(trace)
    assert main(["render", str(trace), "-o", "/nonexistent/x.html"]) == 2
    one_line_error(capsys, "ultravox-fsm render: cannot write /nonexistent/x.html: No such file")


def test_demo_refuses_a_record_directory_it_cannot_create(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--record", "/proc/nope"]) == 2
    one_line_error(capsys, "ultravox-fsm demo: cannot record to /proc/nope: ")


def test_serve_on_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    one_line_error(capsys, f"ultravox-fsm serve: cannot listen on 127.0.0.1:{port}: ")


def test_serve_on_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "99999"])
    assert exit_.value.code == 2
    assert "argument --port: '99999' is not a port (0 to 65535)" in capsys.readouterr().err


def test_binary_diagrams_are_not_written_to_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["diagram", "--format", "png"]) == 2
    one_line_error(capsys, "ultravox-fsm diagram: png is binary: write it to a file with -o FILE")


def test_mermaid_output_ends_with_a_newline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("[*] --> idle\n")


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "`" not in out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "(default: out/demo)" in capsys.readouterr().out
