"""What a stand-in agent says and knows: replies, greeting, saved agents, and per-call records."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GREETING = "Hello! How can I help you today?"


@dataclass(frozen=True)
class Reply:
    """What the agent answers: ``text`` spoken (or written), after calling ``tool`` if set."""

    text: str
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


def default_reply(user_text: str, tools: list[str]) -> Reply:
    """Call a tool named in the text (``use <tool> key=value``), else say ``You said: ...``."""
    match = re.search(r"\buse (\w+)((?:\s+\w+=\S+)*)", user_text)
    if match and match.group(1) in tools:
        arguments = dict(pair.split("=", 1) for pair in match.group(2).split())
        return Reply(
            text="Here is what I found: {result}", tool=match.group(1), arguments=arguments
        )
    return Reply(text=f"You said: {user_text.strip()}")


@dataclass(frozen=True)
class SavedAgent:
    """An agent saved in the account, for ``POST /api/agents/{agent_id}/calls``.

    ``call_template`` holds `StartCallRequest` fields; ``{{name}}`` placeholders in its strings
    are filled from the request's ``templateContext``.
    """

    name: str
    call_template: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    reply: Callable[[str, list[str]], Reply] = default_reply
    # Said when the agent speaks first (the API's default); None: never greet.
    greeting: str | None = DEFAULT_GREETING
    voice_transcript: str = "Hello from the microphone"
    user_final_after_agent_audio: bool = False
    send_thinking: bool = True
    omit_medium: bool = False
    words_per_delta: int = 1
    # deferResponse on user_text_message is UNCERTAIN (protocol §3.1): both readings are offered.
    honour_defer_response: bool = True
    audio_ms_per_word: int = 60
    agents: dict[str, SavedAgent] = field(default_factory=dict)
    # How fast the modelled client plays agent audio (1.0: real time). Benchmarks raise it so a
    # turn does not last as long as its audio.
    playback_speed: float = 1.0
    # Write what a call sends in one loop iteration in one socket write (`burst.BurstWriter`),
    # as a server under load does, instead of one write per frame.
    burst: bool = False


@dataclass
class CallRecord:
    """What one call received and how it went, for assertions and ``GET /api/calls/{id}``.

    ``body`` is the effective call configuration (for agent calls: the template merged with the
    request); ``request`` is the body as received.
    """

    call_id: str
    body: dict[str, Any]
    query: dict[str, str]
    request: dict[str, Any] = field(default_factory=dict)
    agent_id: str | None = None
    agent_name: str | None = None
    created: str = ""
    joined: str | None = None
    ended: str | None = None
    end_reason: str | None = None
    client_version: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    closed: bool = False
