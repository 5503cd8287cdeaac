"""The turn-taking state machine of one Ultravox session, as plain data.

This module is the single source of every turn-taking rule: the engine (`machine.py`) builds its
`transitions.Machine` from `TABLE`, the diagrams are drawn from it and the exhaustive tests walk
it. It imports nothing but the standard library.

States
======

    IDLE          no call yet; requests are queued until the call is live.
    LISTENING     the call is live and the agent is quiet.
    THINKING      the server said it is producing a reply; no agent output has arrived yet.
    SPEAKING      a generation is open: agent text and audio flow into it.
    TOOL_PENDING  at least one client tool invocation is unanswered (a generation may still be
                  open, finishing the words the agent said before the call).
    RESTARTING    the call is being replaced (socket lost, instructions or tools changed); the
                  new call carries the conversation over.
    CLOSED        terminal: the session was closed or the call ended.

Rules
=====

Generations (what LiveKit plays as one agent message)
  * At most one generation is open. It opens on the first agent output of an utterance (an
    agent transcript with a new ordinal, an audio frame, or the server's ``speaking`` state),
    never on ``thinking``: a thought that produces nothing leaves nothing to close.
  * It closes *completed* once its final transcript has arrived and the server is no longer
    speaking (``listening``/``idle``), whichever comes second. The two may arrive in either
    order; if only one arrives, a drain deadline closes it. A tool invocation closes it at
    its final transcript without waiting for the server state (or at the drain deadline, since
    the tool only runs once the generation has ended).
  * It closes *interrupted* on barge-in (``playback_clear_buffer``), on `interrupt()`, or when
    the call is lost. Audio is then dropped until the server starts a fresh turn (``thinking``
    or ``speaking`` after ``listening``), so no frame of the old utterance is ever played.
  * A transcript whose ordinal is not newer than a closed generation's never reopens it.
  * Agent text: a non-final ``text`` replaces what we have, ``delta`` appends, the final
    ``text`` is authoritative; only the missing suffix is pushed, nothing twice.

Ownership (who receives a generation)
  * Every generation is announced exactly once: to the oldest pending `generate_reply`/`say`
    request it answers (the request's future resolves), or else as unsolicited
    (``generation_created``). Never both.
  * A `generate_reply` request answers the first generation that opens after the server
    echoed the request's own text back as a user transcript (ordinal N), or whose ordinal is
    above N. A `say` request answers the generation whose first words match its text. Until
    the evidence is in, a generation is *undecided*: it buffers, and is decided when the echo
    or its first transcript arrives, or at the owner-grace deadline (for servers that do not
    echo), whichever is first.
  * A request that timed out or was cancelled still claims its late reply, which is then
    dropped: a late reply is never handed to anyone else. A request the evidence rules out
    (an ordinal below its echo) is passed over in favour of the next one.
  * `interrupt()` sends an empty ``immediate`` user text with ``deferResponse``. A server that
    reads ``immediate`` as "interrupt and reply" answers it with the very next ordinal; that
    generation is dropped, so either reading of the protocol stops the agent without a reply.

Requests and context
  * Requests made before the call is live are queued (bounded; an evicted request fails) and
    sent once, on connect. The timeout clock starts when a request is sent.
  * Context items (`update_chat_ctx`) are held until the end of the current tick: a
    `generate_reply` in the same tick sends the last user item as the message that asks for
    the reply (urgency ``soon``); otherwise they go out with urgency ``later`` (no reply).
  * Echoes of text we sent are never reported as user speech.

Tools
  * TOOL_PENDING holds exactly while an invocation of the live call is unanswered. Results
    for invocations of another call, or answered ones, are refused and never sent.
  * An invocation unanswered past its deadline is dropped (the server has given up too).

Restarts and the connection
  * A restart requested while the agent is busy (THINKING, SPEAKING, TOOL_PENDING) or while a
    reply request is in flight waits until LISTENING with nothing in flight; several requests
    in a row make one restart.
  * Losing the socket closes the open generation as interrupted and drops pending tools (their
    invocations belong to the lost call). Unanswered requests are sent once more on the new call
    (if the server had echoed a request's text, only a request for the reply is sent, since the
    new call inherits the history; without the echo we cannot know it arrived, so delivery is
    at-least-once); a reply cut mid-utterance is resumed by an internal request
    whose reply is announced as unsolicited. A restart or the end of the call fails requests
    still pending with an error, never a bare cancellation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    TOOL_PENDING = "tool_pending"
    RESTARTING = "restarting"
    CLOSED = "closed"


class Trigger(enum.Enum):
    """Inputs that the table routes; data inputs (deltas, audio) are gated by state checks."""

    CONNECT = "connect"
    DISCONNECT = "disconnect"
    RESTART = "restart"
    END_CALL = "end_call"
    CLOSE = "close"
    SERVER_THINKING = "server_thinking"
    SERVER_SPEAKING = "server_speaking"
    SERVER_LISTENING = "server_listening"
    AGENT_OUTPUT = "agent_output"
    AGENT_FINAL = "agent_final"
    DRAIN_EXPIRED = "drain_expired"
    BARGE_IN = "barge_in"
    INTERRUPT = "interrupt"
    TOOL_INVOCATION = "tool_invocation"
    TOOL_RESULT = "tool_result"
    TOOL_EXPIRED = "tool_expired"
    REQUEST = "request"
    REQUEST_ENDED = "request_ended"
    OWNER_DECIDED = "owner_decided"
    CONTEXT = "context"
    CONTROL = "control"


@dataclass(frozen=True)
class Row:
    """One transition: in any of ``source``, ``trigger`` moves to ``dest`` (None: stay)
    when every name in ``when`` holds; ``effect`` names the engine step that runs first."""

    trigger: Trigger
    source: tuple[State, ...]
    dest: State | None
    effect: str
    when: tuple[str, ...] = ()


S = State
T = Trigger
LIVE = (S.LISTENING, S.THINKING, S.SPEAKING, S.TOOL_PENDING)
OFFLINE = (S.IDLE, S.RESTARTING)
OPEN = LIVE + OFFLINE  # every state but CLOSED
BUSY = (S.THINKING, S.SPEAKING, S.TOOL_PENDING)

# Rows for one trigger are tried in order; the first whose conditions hold wins. Every
# (state, trigger) pair not listed is a protocol error that leaves the state unchanged.
TABLE: tuple[Row, ...] = (
    # --- the call ---------------------------------------------------------------------------
    Row(T.CONNECT, OFFLINE, S.LISTENING, "on_connected"),
    Row(T.DISCONNECT, LIVE, S.RESTARTING, "on_call_lost"),
    Row(T.RESTART, (S.LISTENING,), S.RESTARTING, "on_restart", ("nothing_in_flight",)),
    Row(T.RESTART, (S.LISTENING, *BUSY), None, "defer_restart"),
    Row(T.RESTART, OFFLINE, None, "absorb_restart"),
    Row(T.END_CALL, OPEN, S.CLOSED, "on_call_ended"),
    Row(T.CLOSE, OPEN, S.CLOSED, "on_close"),
    # --- what the server says about itself --------------------------------------------------
    Row(T.SERVER_THINKING, (S.LISTENING,), S.THINKING, "note_server_state"),
    Row(T.SERVER_THINKING, (S.SPEAKING,), S.THINKING, "complete_generation", ("final_seen",)),
    Row(T.SERVER_THINKING, (S.THINKING, S.SPEAKING, S.TOOL_PENDING), None, "note_server_state"),
    Row(
        T.SERVER_SPEAKING, (S.LISTENING, S.THINKING), S.SPEAKING, "begin_utterance", ("may_speak",)
    ),
    # A `speaking` still about the utterance we interrupted (no `listening` since) opens nothing.
    Row(T.SERVER_SPEAKING, (S.LISTENING, S.THINKING), None, "note_server_state"),
    Row(T.SERVER_SPEAKING, (S.SPEAKING, S.TOOL_PENDING), None, "note_server_state"),
    Row(T.SERVER_LISTENING, (S.SPEAKING,), S.LISTENING, "complete_generation", ("final_seen",)),
    Row(T.SERVER_LISTENING, (S.SPEAKING,), None, "start_drain"),
    Row(T.SERVER_LISTENING, (S.THINKING,), S.LISTENING, "note_server_state"),
    Row(T.SERVER_LISTENING, (S.LISTENING, S.TOOL_PENDING), None, "note_server_state"),
    # --- the agent's output -----------------------------------------------------------------
    Row(T.AGENT_OUTPUT, (S.LISTENING, S.THINKING), S.SPEAKING, "begin_utterance"),
    Row(T.AGENT_OUTPUT, (S.SPEAKING, S.TOOL_PENDING), None, "begin_utterance"),
    Row(T.AGENT_FINAL, (S.SPEAKING,), S.LISTENING, "complete_generation", ("server_quiet",)),
    Row(T.AGENT_FINAL, (S.SPEAKING,), None, "start_drain"),
    Row(T.AGENT_FINAL, (S.TOOL_PENDING,), None, "complete_generation"),
    Row(T.DRAIN_EXPIRED, (S.SPEAKING,), S.LISTENING, "complete_generation"),
    Row(T.DRAIN_EXPIRED, (S.TOOL_PENDING,), None, "complete_generation"),
    # --- interruptions ----------------------------------------------------------------------
    Row(T.BARGE_IN, (S.SPEAKING,), S.LISTENING, "clear_playback"),
    Row(T.BARGE_IN, (S.LISTENING, S.THINKING, S.TOOL_PENDING), None, "clear_playback"),
    Row(T.INTERRUPT, (S.SPEAKING,), S.LISTENING, "stop_agent"),
    Row(T.INTERRUPT, (S.THINKING, S.TOOL_PENDING), None, "stop_agent"),
    Row(T.INTERRUPT, (S.LISTENING, *OFFLINE), None, "ignore"),
    # --- tools ------------------------------------------------------------------------------
    Row(T.TOOL_INVOCATION, LIVE, S.TOOL_PENDING, "register_invocation"),
    Row(T.TOOL_RESULT, (S.TOOL_PENDING,), None, "send_tool_result", ("other_tools_pending",)),
    Row(T.TOOL_RESULT, (S.TOOL_PENDING,), S.SPEAKING, "send_tool_result", ("generation_open",)),
    Row(T.TOOL_RESULT, (S.TOOL_PENDING,), S.LISTENING, "send_tool_result"),
    Row(T.TOOL_EXPIRED, (S.TOOL_PENDING,), None, "expire_tool", ("other_tools_pending",)),
    Row(T.TOOL_EXPIRED, (S.TOOL_PENDING,), S.SPEAKING, "expire_tool", ("generation_open",)),
    Row(T.TOOL_EXPIRED, (S.TOOL_PENDING,), S.LISTENING, "expire_tool"),
    # --- requests, context and control messages never move the state ------------------------
    Row(T.REQUEST, OPEN, None, "queue_request"),
    Row(T.REQUEST_ENDED, OPEN, None, "end_request"),
    Row(T.OWNER_DECIDED, OPEN, None, "decide_owner"),
    Row(T.CONTEXT, OPEN, None, "add_context"),
    Row(T.CONTROL, OPEN, None, "send_control"),
)

# Triggers that only keep books (requests, context, control messages): left off diagrams.
BOOKKEEPING = frozenset({T.REQUEST, T.REQUEST_ENDED, T.OWNER_DECIDED, T.CONTEXT, T.CONTROL})
INITIAL = S.IDLE
TERMINAL = frozenset({S.CLOSED})
# A generation may be open only in these states (checked by the property tests).
GENERATION_STATES = frozenset({S.SPEAKING, S.TOOL_PENDING})
# Client-side triggers: an illegal pair is our caller's fault (LocalProtocolError).
LOCAL_TRIGGERS = frozenset(
    {
        T.RESTART,
        T.CLOSE,
        T.INTERRUPT,
        T.TOOL_RESULT,
        T.REQUEST,
        T.REQUEST_ENDED,
        T.CONTEXT,
        T.CONTROL,
    }
)


def rows_for(state: State, trigger: Trigger) -> tuple[Row, ...]:
    """The rows that apply to ``trigger`` in ``state``, in table order."""
    return tuple(r for r in TABLE if r.trigger is trigger and state in r.source)
