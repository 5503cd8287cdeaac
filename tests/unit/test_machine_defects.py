"""The seven defects of the issue "The machine decides everything", each reproduced first."""

from __future__ import annotations

import pytest

from ultravox_fsm import commands as cmd
from ultravox_fsm import events as ev
from ultravox_fsm.errors import RemoteProtocolError
from ultravox_fsm.machine import EngineOptions
from ultravox_fsm.request import DEFAULT_REPLY_PROMPT
from ultravox_fsm.states import State

from .helpers import STATE, Driver, agent, names, sent, user

PROMPT = DEFAULT_REPLY_PROMPT


def test_1_a_reply_answering_two_requests_goes_to_the_users_newest() -> None:
    d = Driver()
    d.live()
    d(agent(1, text="Half of a"))  # cut mid-reply: the new call resumes it internally
    d.lose()
    d.live("c2")
    d(ev.ReplyRequested(request_id="old", instructions="first"))
    d(ev.ReplyRequested(request_id="new", instructions="second"))
    d(user(0, PROMPT, medium="text"))  # the resume's echo
    d(user(1, "<instruction>first</instruction>", medium="text"))
    d(user(2, "<instruction>second</instruction>", medium="text"))
    out = d(agent(3, text="One answer for all"))  # a busy server merges them
    assert cmd.AnnounceGeneration(gen_id="c2-gen2", request_id="new") in out
    assert cmd.EndRequest(request_id="old", answered_by="c2-gen2") in out
    assert not any(isinstance(c, cmd.FailRequest) for c in out)
    assert d.engine.next_deadline() is None  # nothing left waiting, no timeout to come


def test_2_an_abandoned_request_without_evidence_swallows_nothing() -> None:
    d = Driver(EngineOptions(reply_timeout=5.0))
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="x"))
    d(ev.RequestCancelled(request_id="r1"))  # generate_reply then interrupt, before the echo
    d(ev.ReplyRequested(request_id="r2", instructions="y"))
    d(user(1, "<instruction>y</instruction>", medium="text"))
    out = d(agent(2, text="Answer to y"))
    assert cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="r2") in out
    assert not any(isinstance(c, cmd.DiscardGeneration) for c in out)


def test_2_a_timed_out_request_whose_reply_never_came_does_not_take_the_next() -> None:
    d = Driver(EngineOptions(reply_timeout=5.0))
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="x"))
    d(user(0, "<instruction>x</instruction>", medium="text"))
    assert names(d.tick(5.0)) == ["FailRequest"]  # the server merged or dropped its reply
    d(ev.ReplyRequested(request_id="r2", instructions="y"))
    d(user(1, "<instruction>y</instruction>", medium="text"))
    out = d(agent(2, text="Answer to y"))
    assert cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="r2") in out


def test_3_after_an_unechoed_interrupt_replies_start_at_once() -> None:
    d = Driver()
    d.live()
    d(agent(1, text="Talking"))
    d(ev.InterruptRequested())  # a server that never echoes the empty text
    d(STATE["listening"])
    d(user(2, "next question"))
    out = d(agent(3, text="Answer"), at=0.5)
    assert cmd.AnnounceGeneration(gen_id="c1-gen2", request_id=None) in out
    assert d.engine.next_deadline() is None  # no owner grace, let alone a sliding one


def test_4_cancelling_a_queued_reply_keeps_the_users_message() -> None:
    d = Driver()
    d(ev.ContextAdded(role="user", text="Where is my order?"))
    d(ev.ReplyRequested(request_id="r1"))  # no call is live: queued with the user's words
    assert d(ev.RequestCancelled(request_id="r1")) == []
    assert sent(d.live()) == [
        b'{"type":"user_text_message","text":"Where is my order?","urgency":"later",'
        b'"deferResponse":true}'
    ]


def test_5_a_refused_or_ignored_input_changes_nothing() -> None:
    d = Driver()
    with pytest.raises(RemoteProtocolError):
        d(STATE["thinking"], at=1.0)  # no call yet: refused
    d.live()
    d.lose(code=1011)  # backoff done: a new call is being created
    assert d.engine.state is State.RESTARTING
    assert d(STATE["thinking"], at=2.0) == []  # a trailing frame from the old socket: moot
    assert d.engine.state is State.RESTARTING
    d.live("c2")
    out = d(agent(0, text="Hello again"), at=31.0)
    close = d(agent(0, text="Hello again", final=True), at=32.0)
    assert out[0] == cmd.OpenGeneration(gen_id="c2-gen1")
    assert isinstance(close[-1], cmd.CloseGeneration)
    assert close[-1].created_at == 31.0  # not the refused `thinking` at 2.0


def test_6_calls_that_die_before_a_turn_are_bounded_and_end_with_one_failure() -> None:
    options = EngineOptions(max_retry=3)
    d = Driver(options)
    d(ev.ReplyRequested(request_id="poison", instructions="x" * 10))
    calls, finished = 1, []
    for n in range(20):
        d.live(f"c{n}")
        out = d.lose(f"c{n}")
        calls += sum(isinstance(c, cmd.StartCall) for c in out)
        finished += [c for c in out if isinstance(c, cmd.CallFinished)]
        if finished:
            break
    assert calls == options.max_retry + 1
    assert finished[0].outcome == "failed" and "before a turn completed" in finished[0].reason
    assert d.engine.state is State.CLOSED


def test_6_a_request_every_call_dies_on_fails_instead_of_being_resent_forever() -> None:
    d = Driver(EngineOptions(max_retry=10))
    d(ev.ReplyRequested(request_id="poison", instructions="x"))
    d.live("c1")
    d.lose("c1")
    d.live("c2")
    out = d.lose("c2")
    out += d.live("c3")
    fails = [c for c in out if isinstance(c, cmd.FailRequest)]
    assert [f.request_id for f in fails] == ["poison"]
    assert "not sent again" in fails[0].reason
    assert sent(out) == []


def test_6_backoff_grows_with_jitter() -> None:
    d = Driver(EngineOptions(max_retry=5, seed=3))
    delays = []
    for n in range(4):
        d.live(f"c{n}")
        d(ev.SocketClosed(call_id=f"c{n}", code=1011))
        deadline = d.engine.next_deadline()
        assert deadline is not None
        delays.append(deadline - d.now)
        d.tick(deadline)
    assert delays[0] < delays[1] < delays[2] < delays[3]
    assert 0.05 <= delays[0] <= 0.15 and 1.0 <= delays[1] <= 3.0


@pytest.mark.parametrize("retry_after", [86400.0, float("inf"), float("nan")])
def test_7_retry_after_is_capped_and_queued_requests_time_out(retry_after: float) -> None:
    d = Driver(EngineOptions(max_backoff=30.0, reply_timeout=15.0))
    d(ev.ReplyRequested(request_id="r1"))
    d(ev.CallFailed(detail="HTTP 429", retryable=True, status=429, retry_after=retry_after))
    out = d.tick(15.0) + d.tick(30.0)
    assert cmd.FailRequest(request_id="r1", reason="no call became live in time") in out
    assert names(out).count("StartCall") == 1  # the capped backoff is over by 30 s


# --- found by the adversarial review after the rewrite (each reproduced first) ----------------


def test_a_newer_say_owns_its_words_over_an_older_echoed_reply_request() -> None:
    d = Driver()
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="x"))
    d(user(0, "<instruction>x</instruction>", medium="text"))
    d(ev.SayRequested(request_id="s1", text="Please hold while I transfer you."))
    out = d(agent(1, text="Please hold while I transfer you.", final=True))
    assert cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="s1") in out
    assert not any(isinstance(c, cmd.EndRequest) for c in out)  # r1 still waits for its reply
    d(STATE["listening"])
    out = d(agent(2, text="Here is x"))
    assert cmd.AnnounceGeneration(gen_id="c1-gen2", request_id="r1") in out


def test_a_one_word_prefix_is_no_evidence_for_a_say() -> None:
    d = Driver()
    d.live()
    d(ev.SayRequested(request_id="s1", text="I'm transferring you now to billing."))
    d(user(0, "what time is it"))
    out = d(agent(1, delta="I"))  # the server's answer to the user, not the forced message
    assert not any(isinstance(c, cmd.AnnounceGeneration) for c in out)
    out = d(agent(1, delta=" think it is noon."))
    assert cmd.AnnounceGeneration(gen_id="c1-gen1", request_id=None) in out


def test_a_call_created_after_the_options_changed_is_not_replaced() -> None:
    d = Driver(EngineOptions(seed=1))
    assert d(ev.RestartRequested(reason="instructions changed")) == []  # the call is created
    d(ev.CallFailed(detail="HTTP 503", retryable=True, status=503))
    deadline = d.engine.next_deadline()
    assert deadline is not None
    assert names(d.tick(deadline)) == ["StartCall"]  # built from the current options
    assert "StartCall" not in names(d.live("c2"))


def test_a_reply_that_began_before_the_timeout_is_not_failed_by_it() -> None:
    d = Driver(EngineOptions(reply_timeout=15.0))
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="x"))
    d(ev.AgentAudio(data=b"\1\0"), at=14.9)  # its reply starts; the echo is late
    d(user(0, "<instruction>x</instruction>", medium="text"), at=14.95)
    assert not [c for c in d.tick(15.0) if isinstance(c, cmd.FailRequest)]
    out = d(agent(1, text="Here is x"), at=15.1)
    assert cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="r1") in out


def test_calls_that_prove_themselves_then_drop_at_once_back_off_anyway() -> None:
    d = Driver(EngineOptions(seed=2, max_retry=3))
    delays = []
    for n in range(8):
        d.live(f"c{n}")
        d(agent(0, text="Hi", final=True))  # a turn completes: the call proved itself
        d(ev.SocketClosed(call_id=f"c{n}", code=1011))
        deadline = d.engine.next_deadline()
        assert deadline is not None
        delays.append(deadline - d.now)
        d.tick(deadline)
    assert d.engine.state is not State.CLOSED  # proved calls cost no budget
    assert delays[-1] > 10 * delays[0]  # but a flapping server is not hammered
