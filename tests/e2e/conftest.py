from collections.abc import AsyncIterator

import pytest

from ultravox_fsm.testing.server import StandInServer


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with StandInServer() as s:
        yield s
