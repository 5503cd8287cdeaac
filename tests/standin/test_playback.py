"""The client's playback position the stand-in paces audio and cuts transcripts by (item 4)."""

from __future__ import annotations

from ultravox_fsm.testing.playback import Playback


def test_unplayed_audio_is_sent_minus_elapsed_and_restarts_after_a_gap() -> None:
    now = [10.0]
    playback = Playback(lambda: now[0])
    playback.sent(2400)  # a whole reply at once, as with a 30 s client buffer
    now[0] += 0.4
    assert round(playback.unplayed_ms()) == 2000
    now[0] += 5
    assert playback.unplayed_ms() == 0  # never below zero
    playback.sent(100)  # after a gap the client starts playing again from now
    assert round(playback.unplayed_ms()) == 100
    playback.clear()  # playback_clear_buffer
    assert playback.unplayed_ms() == 0
