"""Hypothesis strategies for Ultravox traffic, to property-test turn-taking code (ours or yours).

`server_messages()` draws decoded server messages, `client_inputs()` the engine's non-wire
inputs, `inputs()` either. Ids and ordinals come from small pools so that draws collide the way
real traffic does (a result for a live invocation, a transcript for the open utterance).
"""

from __future__ import annotations

import msgspec
from hypothesis import strategies as st

from .. import events as ev
from .. import wire

INVOCATIONS = ("i0", "i1", "i2")
REQUESTS = ("r0", "r1", "r2", "r3")
TOOLS = ("lookup", "book")
TEXTS = (
    "Hi",
    "Hi there",
    "You said: hi",
    "<instruction>Respond to the user now.</instruction>",
    "",
)


def transcripts() -> st.SearchStrategy[wire.Transcript]:
    text_or_delta = st.one_of(
        st.tuples(st.sampled_from(TEXTS), st.none()), st.tuples(st.none(), st.sampled_from(TEXTS))
    )
    return st.builds(
        lambda role, td, final, ordinal, medium: wire.Transcript(
            role=role, text=td[0], delta=td[1], final=final, ordinal=ordinal, medium=medium
        ),
        st.sampled_from(("agent", "user")),
        text_or_delta,
        st.sampled_from((False, False, False, True)),  # utterances are mostly non-final frames
        st.none() | st.integers(0, 6),
        st.sampled_from(("voice", "text")),
    )


def server_messages() -> st.SearchStrategy[wire.ServerMessage | wire.Unknown]:
    return st.one_of(
        st.builds(
            wire.State, state=st.sampled_from(("idle", "listening", "thinking", "speaking", "odd"))
        ),
        transcripts(),
        st.builds(
            wire.ClientToolInvocation,
            tool_name=st.sampled_from((*TOOLS, "unknown_tool")),
            invocation_id=st.sampled_from(INVOCATIONS),
            parameters=st.just(msgspec.Raw(b"{}")),
        ),
        st.just(wire.PlaybackClearBuffer()),
        st.builds(wire.CallStarted, call_id=st.sampled_from(("c1", "c2"))),
        st.just(wire.Pong(timestamp=1.0)),
        st.just(wire.Unknown(type="brand_new", raw=b'{"type":"brand_new"}')),
    )


def client_inputs() -> st.SearchStrategy[ev.Input]:
    request = st.sampled_from(REQUESTS)
    invocation = st.sampled_from(INVOCATIONS)
    return st.one_of(
        st.builds(ev.Connected, call_id=st.sampled_from(("c1", "c2", "c3"))),
        st.builds(
            ev.SocketClosed,
            call_id=st.sampled_from(("c1", "c2", "c3")),
            code=st.sampled_from((1006, 1011, None, 1000)),
        ),
        st.builds(
            ev.CallFailed,
            detail=st.just("HTTP 503"),
            retryable=st.booleans(),
            status=st.sampled_from((503, 429, 404, None)),
            retry_after=st.none() | st.sampled_from((0.5, 86400.0, float("inf"))),
        ),
        st.builds(ev.RestartRequested, reason=st.just("instructions changed")),
        st.builds(ev.AgentAudio, data=st.just(b"\x01\x00" * 4)),
        st.builds(ev.ReplyRequested, request_id=request, instructions=st.none() | st.just("Hi")),
        st.builds(ev.SayRequested, request_id=request, text=st.sampled_from(TEXTS[:3])),
        st.builds(ev.RequestCancelled, request_id=request),
        st.builds(ev.ContextAdded, role=st.sampled_from(("user", "system")), text=st.just("Hi")),
        st.just(ev.ContextFlush()),
        st.builds(
            ev.ToolResult,
            invocation_id=invocation,
            result=st.just("{}"),
            reply_required=st.booleans(),
        ),
        st.builds(ev.ToolsChanged, names=st.just(frozenset(TOOLS))),
        st.just(ev.InterruptRequested()),
        st.builds(ev.OutputMediumChanged, medium=st.sampled_from(("voice", "text"))),
        st.builds(ev.HangUpRequested, message=st.none() | st.just("Bye")),
    )


def inputs() -> st.SearchStrategy[wire.ServerMessage | wire.Unknown | ev.Input]:
    return st.one_of(server_messages(), client_inputs())
