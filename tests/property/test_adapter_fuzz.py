"""Random frames through the LiveKit adapter: every frame is handled or reported, nothing escapes,
and the core's invariants hold afterwards."""

from __future__ import annotations

import asyncio

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ultravox_fsm import RealtimeModel, State
from ultravox_fsm import events as ev
from ultravox_fsm.states import GENERATION_STATES
from ultravox_fsm.testing.strategies import server_messages

_encoder = msgspec.json.Encoder()

frames = st.lists(
    st.one_of(
        server_messages().map(lambda m: _encoder.encode(m).decode()),
        st.text(max_size=40),
        st.binary(max_size=64),
        st.just(b"\x01\x00" * 160),
    ),
    max_size=40,
)


async def feed(batch: list[str | bytes]) -> None:
    model = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="fuzz-key")
    rt = model.session()
    rt.feed_network(ev.Connected(call_id="fuzz"))  # before the first call is created
    for frame in batch:
        if isinstance(frame, bytes):
            rt.on_audio(frame)
        else:
            rt.on_text(frame)
        if rt.state is not State.CLOSED and rt._engine.open_generation is not None:
            assert rt.state in GENERATION_STATES
    await rt.aclose()


@settings(max_examples=60, deadline=None)
@given(frames)
def test_random_frames_through_the_adapter_never_escape(batch: list[str | bytes]) -> None:
    asyncio.run(feed(batch))
