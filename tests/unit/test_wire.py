"""The wire codec: exact client bytes, tolerant server decoding, typed errors only."""

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ultravox_fsm import wire
from ultravox_fsm.call import to_duration
from ultravox_fsm.errors import RemoteProtocolError

GOLDEN = [
    (wire.Ping(timestamp=1.5), b'{"type":"ping","timestamp":1.5}'),
    (
        wire.UserTextMessage(text="note", urgency="later", defer_response=True),
        b'{"type":"user_text_message","text":"note","urgency":"later","deferResponse":true}',
    ),
    (
        wire.UserTextMessage(text="hi", urgency="soon", thread_id="UI"),
        b'{"type":"user_text_message","text":"hi","urgency":"soon","threadId":"UI"}',
    ),
    (
        wire.InputTextMessage(text="x", defer_response=True),
        b'{"type":"input_text_message","text":"x","deferResponse":true}',
    ),
    (wire.SetOutputMedium(medium="text"), b'{"type":"set_output_medium","medium":"text"}'),
    (
        wire.ClientToolResult(invocation_id="c1", result="{}", agent_reaction="listens"),
        b'{"type":"client_tool_result","invocationId":"c1","result":"{}","agentReaction":"listens"}',
    ),
    (
        wire.ClientToolResult(
            invocation_id="c2",
            error_type="implementation-error",
            error_message="boom",
            response_type="hang-up",
            update_call_state={"a": 1},
        ),
        b'{"type":"client_tool_result","invocationId":"c2","responseType":"hang-up",'
        b'"errorType":"implementation-error","errorMessage":"boom","updateCallState":{"a":1}}',
    ),
    (
        wire.ForcedAgentMessage(content="Bye", uninterruptible=False, urgency="immediate"),
        b'{"type":"forced_agent_message","content":"Bye","uninterruptible":false,'
        b'"urgency":"immediate"}',
    ),
    (wire.HangUp(message="Goodbye"), b'{"type":"hang_up","message":"Goodbye"}'),
]


@pytest.mark.parametrize(("message", "expected"), GOLDEN)
def test_client_messages_encode_to_exact_bytes(message: wire.Message, expected: bytes) -> None:
    assert wire.encode(message) == expected
    assert wire.decode_client(expected) == message


def test_transcript_without_medium_defaults_to_voice() -> None:
    msg = wire.decode_server(
        b'{"type":"transcript","role":"user","text":"hi","final":true,"ordinal":1}'
    )
    assert msg == wire.Transcript(role="user", medium="voice", text="hi", final=True, ordinal=1)


def test_unknown_type_is_kept_raw_not_an_error() -> None:
    frame = b'{"type":"call_event","x":1}'
    assert wire.decode_server(frame) == wire.Unknown(type="call_event", raw=frame)


def test_tool_parameters_pass_through_byte_for_byte() -> None:
    msg = wire.decode_server(
        b'{"type":"client_tool_invocation","toolName":"t","invocationId":"i",'
        b'"parameters":{"city":"Paris","days":[1,2]}}'
    )
    assert isinstance(msg, wire.ClientToolInvocation)
    assert bytes(msg.parameters) == b'{"city":"Paris","days":[1,2]}'


@pytest.mark.parametrize(
    "frame",
    [
        b"{",
        b"[]",
        b'{"no_type":1}',
        b'{"type":"transcript","role":"robot","final":true}',
        b'{"type":"state","state":5}',
        b"\xff\xfe",
    ],
)
def test_bad_frames_raise_remote_protocol_error(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        wire.decode_server(frame)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decoding_random_bytes_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        wire.decode_server(data)


@given(
    st.dictionaries(
        st.sampled_from([*sorted(wire.SERVER_TYPES), "type", "role", "final"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        max_size=6,
    )
)
def test_decoding_random_objects_never_raises_anything_else(obj: dict[str, object]) -> None:
    with contextlib.suppress(RemoteProtocolError):
        wire.decode_server(msgspec.json.encode(obj))


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("30m", "1800s"),
        ("1h", "3600s"),
        ("1h30m", "5400s"),
        ("90", "90s"),
        (45, "45s"),
        ("0.384s", "0.384s"),
        ("2m30s", "150s"),
        (1.5, "1.5s"),
    ],
)
def test_durations_become_api_seconds(given_value: str | float, expected: str) -> None:
    assert to_duration(given_value) == expected


@pytest.mark.parametrize("bad", ["abc", "30x", "", "5ms", True])
def test_bad_durations_raise_clear_value_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        to_duration(bad)  # type: ignore[arg-type]
