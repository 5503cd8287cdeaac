"""Scripted conversations (protocol §4) and the seed's races, asserting the exact commands."""

import pytest

from ultravox_fsm import commands as cmd
from ultravox_fsm import events as ev
from ultravox_fsm import wire
from ultravox_fsm.errors import LocalProtocolError
from ultravox_fsm.machine import EngineOptions
from ultravox_fsm.states import State

from .helpers import STATE, Driver, agent, invocation, names, sent, user


def test_greeting_unsolicited_with_text_replaced_then_deltas_then_authoritative_final() -> None:
    d = Driver()
    d.live()
    assert names(d(STATE["thinking"])) == []
    assert d.engine.state is State.THINKING
    assert names(d(ev.AgentAudio(data=b"\1\0"))) == [
        "OpenGeneration",
        "AnnounceGeneration",
        "PushAudio",
    ]
    out = d(STATE["speaking"])
    assert out == []
    assert d(agent(0, text="Hi")) == [cmd.PushText(gen_id="c1-gen1", text="Hi")]
    assert d(agent(0, delta=" there")) == [cmd.PushText(gen_id="c1-gen1", text=" there")]
    assert d(agent(0, text="Hi there, friend", final=True)) == [
        cmd.PushText(gen_id="c1-gen1", text=", friend")
    ]
    out = d(STATE["listening"], at=1.0)
    assert names(out) == ["CloseGeneration"]
    close = out[0]
    assert isinstance(close, cmd.CloseGeneration)
    assert (close.text, close.interrupted, close.closed_at) == ("Hi there, friend", False, 1.0)
    assert d.engine.state is State.LISTENING


def test_voice_turn_with_user_final_after_agent_audio_is_one_generation() -> None:
    d = Driver()
    d.live()
    d(ev.AgentAudio(data=b"\1\0"))
    d(STATE["speaking"])
    assert names(d(user(1, "what time is it"))) == ["UserTranscript"]
    assert names(d(agent(2, text="It is"))) == ["PushText"]
    assert names(d(agent(2, text="It is noon.", final=True))) == ["PushText"]
    assert names(d(STATE["listening"])) == ["CloseGeneration"]


def test_listening_before_final_waits_for_the_final_and_late_deltas_do_not_reopen() -> None:
    d = Driver()
    d.live()
    d(agent(0, text="One"))
    assert names(d(STATE["listening"])) == []
    assert d.engine.state is State.SPEAKING
    assert names(d(agent(0, text="One two", final=True))) == ["PushText", "CloseGeneration"]
    assert names(d(agent(0, delta=" three"))) == ["Report"]


def test_barge_in_interrupts_drops_late_audio_and_ignores_the_interrupted_final() -> None:
    d = Driver()
    d.live()
    d(STATE["speaking"])
    d(agent(3, text="A long answer"))
    out = d(wire.PlaybackClearBuffer())
    assert names(out) == ["UserSpeechStarted", "CloseGeneration"]
    assert out[1].interrupted is True  # type: ignore[attr-defined]
    assert d(ev.AgentAudio(data=b"\1\0")) == []
    assert d.engine.audio_target is None
    assert names(d(agent(3, text="A long", final=True))) == []  # its late final: expected
    d(STATE["listening"])
    assert names(d(STATE["thinking"])) == ["UserSpeechStopped"]
    assert names(d(ev.AgentAudio(data=b"\1\0"))) == [
        "OpenGeneration",
        "AnnounceGeneration",
        "PushAudio",
    ]


def test_tool_round_trip_with_ordinal_gaps() -> None:
    d = Driver()
    d.live()
    d(ev.ToolsChanged(names=frozenset({"lookup"})))
    d(user(1, "weather in Paris?"))
    d(STATE["thinking"])
    out = d(invocation("call_1"))
    assert names(out) == [
        "OpenGeneration",
        "AnnounceGeneration",
        "PushFunctionCall",
        "CloseGeneration",
    ]
    assert d.engine.state is State.TOOL_PENDING
    out = d(ev.ToolResult(invocation_id="call_1", result='{"temp":21}', reply_required=False))
    assert sent(out) == [
        b'{"type":"client_tool_result","invocationId":"call_1","result":"{\\"temp\\":21}",'
        b'"agentReaction":"listens"}'
    ]
    assert d.engine.state is State.LISTENING
    # The server still says `thinking`, so the generation waits for it to go quiet.
    assert names(d(agent(4, text="It is 21 degrees.", final=True))) == [
        "OpenGeneration",
        "AnnounceGeneration",
        "PushText",
    ]
    assert names(d(STATE["listening"])) == ["CloseGeneration"]
    with pytest.raises(LocalProtocolError, match="no such invocation"):
        d(ev.ToolResult(invocation_id="call_1", result="again"))


def test_unknown_tool_is_answered_undefined_without_reaching_the_agent() -> None:
    d = Driver()
    d.live()
    d(ev.ToolsChanged(names=frozenset({"lookup"})))
    out = d(invocation("call_9", name="launch_rockets"))
    assert names(out) == ["Report", "Send:ClientToolResult"]
    assert b'"errorType":"undefined"' in sent(out)[0]
    assert d.engine.state is State.LISTENING


def test_text_mode_turn_and_hang_up() -> None:
    d = Driver()
    d.live()
    out = d(ev.ReplyRequested(request_id="r1", instructions="Say hi"))
    assert sent(out) == [
        b'{"type":"user_text_message","text":"<instruction>Say hi</instruction>","urgency":"soon"}'
    ]
    assert d(user(0, "<instruction>Say hi</instruction>", medium="text")) == []
    out = d(wire.Transcript(role="agent", medium="text", text="Hi!", final=True, ordinal=1))
    assert names(out) == ["OpenGeneration", "AnnounceGeneration", "PushText", "CloseGeneration"]
    assert out[1] == cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="r1")
    assert sent(d(ev.HangUpRequested(message="Bye"))) == [b'{"type":"hang_up","message":"Bye"}']
    out = d(ev.SocketClosed(call_id="c1", code=1000))
    assert names(out) == ["CallFinished"]
    assert d.engine.state is State.CLOSED


def test_d2_reply_in_progress_is_not_taken_by_a_later_generate_reply() -> None:
    d = Driver()
    d.live()
    d(STATE["thinking"])
    d(ev.ReplyRequested(request_id="r1"))
    out = d(agent(2, text="Answer to the voice turn"))
    assert out[:1] == [cmd.OpenGeneration(gen_id="c1-gen1")]
    assert not any(isinstance(c, cmd.AnnounceGeneration) for c in out)  # undecided
    out = d(user(3, "<instruction>Respond to the user now.</instruction>", medium="text"))
    assert out == [cmd.AnnounceGeneration(gen_id="c1-gen1", request_id=None)]
    d(agent(2, text="Answer to the voice turn", final=True))
    d(STATE["listening"])
    out = d(agent(4, text="Requested reply"))
    assert cmd.AnnounceGeneration(gen_id="c1-gen2", request_id="r1") in out


def test_server_that_never_echoes_still_resolves_after_the_grace() -> None:
    d = Driver(EngineOptions(owner_grace=0.5))
    d.live()
    d(ev.ReplyRequested(request_id="r1"))
    d(agent(1, text="Hello"))
    assert d.engine.next_deadline() == 0.5
    assert d.tick(0.5) == [cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="r1")]


def test_say_claims_the_generation_whose_words_match() -> None:
    d = Driver()
    d.live()
    out = d(ev.SayRequested(request_id="s1", text="Thanks for calling.", interruptible=True))
    assert sent(out) == [
        b'{"type":"forced_agent_message","content":"Thanks for calling.","uninterruptible":false}'
    ]
    assert not any(isinstance(c, cmd.AnnounceGeneration) for c in d(agent(1, text="Thanks")))
    out = d(agent(1, text="Thanks for calling"))  # three words are evidence, one is not
    assert cmd.AnnounceGeneration(gen_id="c1-gen1", request_id="s1") in out


def test_timed_out_request_fails_and_its_late_reply_is_dropped() -> None:
    d = Driver(EngineOptions(reply_timeout=5.0))
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="x"))
    d(user(0, "<instruction>x</instruction>", medium="text"))
    assert d.tick(5.0) == [
        cmd.FailRequest(request_id="r1", reason="timed out waiting for the reply")
    ]
    out = d(agent(1, text="late"))
    assert names(out) == ["OpenGeneration", "DiscardGeneration"]
    assert d.engine.audio_target is None


def test_context_in_the_same_tick_as_generate_reply_becomes_the_request() -> None:
    d = Driver()
    d.live()
    assert d(ev.ContextAdded(role="system", text="VIP caller")) == []
    d(ev.ContextAdded(role="user", text="What's my balance?"))
    out = d(ev.ReplyRequested(request_id="r1"))
    assert sent(out) == [
        b'{"type":"user_text_message","text":"<instruction>VIP caller</instruction>",'
        b'"urgency":"later","deferResponse":true}',
        b'{"type":"user_text_message","text":"What\'s my balance?","urgency":"soon"}',
    ]
    assert d(user(1, "What's my balance?", medium="text")) == []  # our echo is not user speech


def test_context_alone_goes_out_later_and_never_asks_for_a_reply() -> None:
    d = Driver()
    d.live()
    d(ev.ContextAdded(role="user", text="FYI: I'm driving"))
    assert sent(d(ev.ContextFlush())) == [
        b'{"type":"user_text_message","text":"FYI: I\'m driving","urgency":"later",'
        b'"deferResponse":true}'
    ]


def test_requests_before_connect_are_queued_and_sent_once() -> None:
    d = Driver()
    assert d(ev.ReplyRequested(request_id="r1", instructions="greet")) == []
    assert names(d.live()) == ["Send:UserTextMessage"]


def test_restart_waits_for_the_turn_then_keeps_unsent_requests() -> None:
    d = Driver()
    d.live()
    d(STATE["speaking"])
    d(agent(0, text="Speaking"))
    assert d(ev.RestartRequested(reason="instructions changed")) == []
    assert names(d(agent(0, text="Speaking now", final=True))) == ["PushText"]
    out = d(STATE["listening"])
    assert names(out) == ["CloseGeneration", "StartCall"]
    assert out[-1] == cmd.StartCall(reason="instructions changed", prior_call_id="c1")
    assert d.engine.state is State.RESTARTING
    d(ev.ReplyRequested(request_id="r2"))
    assert names(d.live("c2")) == ["Send:UserTextMessage"]


def test_call_lost_mid_utterance_resumes_the_reply_on_the_new_call() -> None:
    d = Driver()
    d.live()
    d(ev.ToolsChanged(names=frozenset({"lookup"})))
    d(ev.ReplyRequested(request_id="r1"))
    d(agent(1, text="Half"))
    d(invocation("call_1"))
    out = d.lose()
    # The undecided generation is decided as it closes (no echo came: it answers r1).
    assert names(out) == ["AnnounceGeneration", "CloseGeneration", "Report", "StartCall"]
    assert out[1].interrupted is True  # type: ignore[attr-defined]
    assert out[-1] == cmd.StartCall(reason="reconnect: 1006", prior_call_id="c1")
    assert d.engine.state is State.RESTARTING
    assert d.engine.pending_invocations == frozenset()
    assert sent(d.live("c2")) == [
        b'{"type":"user_text_message","text":"<instruction>Respond to the user now.</instruction>",'
        b'"urgency":"soon"}'
    ]
    with pytest.raises(LocalProtocolError):
        d(ev.ToolResult(invocation_id="call_1", result="stale"))
    d(user(0, "<instruction>Respond to the user now.</instruction>", medium="text"))
    out = d(agent(1, text="As I was saying"))  # ordinals restart per call
    assert cmd.AnnounceGeneration(gen_id="c2-gen2", request_id=None) in out


def test_an_unanswered_request_is_sent_once_more_on_the_new_call() -> None:
    d = Driver()
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="hi"))
    out = d.lose()
    assert names(out) == ["StartCall"]
    assert sent(d.live("c2")) == [
        b'{"type":"user_text_message","text":"<instruction>hi</instruction>","urgency":"soon"}'
    ]
    d(user(0, "<instruction>hi</instruction>", medium="text"))
    out = d(agent(1, text="Hi!"))
    assert cmd.AnnounceGeneration(gen_id="c2-gen1", request_id="r1") in out


def test_an_echoed_request_asks_the_new_call_only_for_the_reply() -> None:
    d = Driver()
    d.live()
    d(ev.ContextAdded(role="user", text="Where is my order?"))
    d(ev.ReplyRequested(request_id="r1"))
    d(user(0, "Where is my order?", medium="text"))
    d.lose()
    assert sent(d.live("c2")) == [
        b'{"type":"user_text_message","text":"<instruction>Respond to the user now.</instruction>",'
        b'"urgency":"soon"}'
    ]


def test_interrupt_stops_local_audio_and_asks_for_no_reply() -> None:
    d = Driver()
    d.live()
    d(agent(1, text="Talking"))
    out = d(ev.InterruptRequested())
    assert sent(out) == [
        b'{"type":"user_text_message","text":"","urgency":"immediate","deferResponse":true}'
    ]
    assert names(out)[-1] == "CloseGeneration"
    assert d(ev.InterruptRequested()) == []


def test_requests_after_close_are_refused() -> None:
    d = Driver()
    d.live()
    d(ev.Close())
    with pytest.raises(LocalProtocolError, match="closed"):
        d(ev.ReplyRequested(request_id="r1"))


def test_a_moot_option_change_after_the_end_changes_nothing_quietly() -> None:
    d = Driver()
    d.live()
    d(ev.Close())
    assert d(ev.OutputMediumChanged(medium="text")) == []  # LiveKit may still call it


def test_a_call_creation_the_end_overtook_has_a_moot_outcome() -> None:
    for late in (ev.CallFailed(detail="HTTP 503", retryable=True), ev.Connected(call_id="c9")):
        d = Driver()  # the first call is being created
        d(ev.Close())
        assert d(late) == []
        assert d.engine.connection.value == "ended"


def test_opt_in_user_speech_messages_pair_started_with_stopped() -> None:
    d = Driver()
    d.live()
    assert names(d(wire.UserStartedSpeaking())) == ["UserSpeechStarted"]
    assert d(wire.UserStartedSpeaking()) == []
    assert names(d(wire.UserStoppedSpeaking())) == ["UserSpeechStopped"]
    assert d(wire.UserStoppedSpeaking()) == []


def test_a_barge_in_answered_only_by_our_own_echo_still_ends_user_speech() -> None:
    d = Driver()
    d.live()
    d(agent(1, text="Talking"))
    d(ev.InterruptRequested())
    assert names(d(wire.PlaybackClearBuffer())) == ["UserSpeechStarted"]
    assert names(d(user(2, "", medium="text"))) == ["UserSpeechStopped"]


def test_a_reply_to_our_interrupt_is_dropped_but_the_next_turn_is_not() -> None:
    d = Driver()
    d.live()
    d(agent(1, text="Talking"))
    d(ev.InterruptRequested())
    d(user(2, "", medium="text"))  # the echo of the interrupt
    out = d(agent(3, text="Sure, what else?"))  # a server that replies to `immediate`
    assert names(out) == ["OpenGeneration", "DiscardGeneration"]
    d(agent(3, text="Sure, what else?", final=True))
    d(STATE["listening"])
    d(user(4, "new question"))
    out = d(agent(5, text="Answer"))
    assert cmd.AnnounceGeneration(gen_id="c1-gen3", request_id=None) in out


def test_a_server_that_honours_defer_response_loses_nothing_after_an_interrupt() -> None:
    d = Driver()
    d.live()
    d(agent(1, text="Talking"))
    d(ev.InterruptRequested())
    d(user(2, "", medium="text"))
    d(user(3, "next question"))
    out = d(agent(4, text="Answer"))
    assert cmd.AnnounceGeneration(gen_id="c1-gen2", request_id=None) in out


def test_interim_transcripts_of_our_own_text_are_not_user_speech() -> None:
    d = Driver()
    d.live()
    d(ev.ReplyRequested(request_id="r1", instructions="hi there"))
    partial = wire.Transcript(role="user", medium="text", text="<instruction>hi", ordinal=0)
    assert d(partial) == []
    real = wire.Transcript(role="user", text="hello from", ordinal=1)
    assert names(d(real)) == ["UserTranscript"]


def test_messages_held_offline_are_bounded_and_an_evicted_request_fails() -> None:
    d = Driver(EngineOptions(max_unsent=2))
    d(ev.ReplyRequested(request_id="r1", instructions="first"))
    d(ev.ContextAdded(role="user", text="a"))
    d(ev.ContextFlush())
    out = d(ev.SayRequested(request_id="s1", text="third"))
    assert out == [
        cmd.FailRequest(
            request_id="r1", reason="too many messages were queued while no call was live"
        )
    ]
    assert names(d.live()) == ["Send:UserTextMessage", "Send:ForcedAgentMessage"]


def test_a_tool_call_mid_utterance_without_a_final_still_ends_the_generation() -> None:
    d = Driver(EngineOptions(drain_timeout=2.0))
    d.live()
    d(ev.ToolsChanged(names=frozenset({"lookup"})))
    d(STATE["speaking"])
    d(agent(1, text="Let me check"))
    out = d(invocation("call_1"), at=1.0)
    assert names(out) == ["PushFunctionCall"]
    assert d.engine.next_deadline() == 3.0
    out = d.tick(3.0)
    assert names(out) == ["CloseGeneration"]
    assert d.engine.state is State.TOOL_PENDING


def test_options_changed_while_the_call_is_created_replace_it_once_quiet() -> None:
    d = Driver()
    d(ev.ReplyRequested(request_id="r1", instructions="hi"))
    assert d(ev.RestartRequested(reason="tools changed")) == []  # the call is being created
    out = d.live()
    assert names(out) == ["Send:UserTextMessage"]  # the request first; no restart yet
    d(user(0, "<instruction>hi</instruction>", medium="text"))
    out = d(agent(1, text="Hi!", final=True))
    assert names(out)[-2:] == ["CloseGeneration", "StartCall"]  # replaced once the reply is done
    assert d.engine.state is State.RESTARTING


def test_a_final_cut_to_what_was_played_is_the_history_not_a_rewrite() -> None:
    d = Driver()
    d.live()
    d(STATE["speaking"])
    d(agent(1, text="Once upon a time there was a very long story"))
    out = d(agent(1, text="Once upon a time", final=True))  # the server cut it at playback
    assert names(out) == []  # no rewrite reported, nothing pushed again
    close = d(STATE["listening"])[-1]
    assert isinstance(close, cmd.CloseGeneration) and close.text == "Once upon a time"
