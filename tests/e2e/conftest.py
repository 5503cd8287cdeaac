"""End-to-end fixtures. ``ULTRAVOX_FSM_TEST_TRANSPORT=lean`` runs the whole suite on the lean
WebSocket transport: every `RealtimeModel` a test builds (directly, through the demo or the
example agent) then defaults to ``transport="lean"``; ``make test`` runs the suite both ways."""

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from ultravox_fsm import RealtimeModel
from ultravox_fsm.testing.server import StandInServer

TRANSPORT = os.environ.get("ULTRAVOX_FSM_TEST_TRANSPORT", "aiohttp")
assert TRANSPORT in ("aiohttp", "lean"), f"ULTRAVOX_FSM_TEST_TRANSPORT={TRANSPORT!r}"


@pytest.fixture(autouse=True)
def default_transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    defaults = RealtimeModel.__init__.__kwdefaults__
    assert defaults is not None and "transport" in defaults
    monkeypatch.setitem(defaults, "transport", TRANSPORT)
    yield


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with StandInServer() as s:
        yield s
