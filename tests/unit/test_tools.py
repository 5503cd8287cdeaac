"""LiveKit tools as Ultravox temporary client tools: faithful schemas and per-tool settings."""

from __future__ import annotations

from typing import Literal

import pytest
from livekit.agents import function_tool

from ultravox_fsm.io.tools import to_selected_tool, to_selected_tools


@function_tool
async def book(
    day: Literal["mon", "tue"] | None = None, guests: list[str] | None = None, note: str = ""
) -> str:
    """Book a table."""
    return "ok"


@function_tool(
    raw_schema={"name": "ping", "description": "No properties.", "parameters": {"type": "object"}}
)
async def ping(raw_arguments: dict[str, object]) -> str:
    return "pong"


def test_enum_and_items_inside_anyof_survive() -> None:
    tool = to_selected_tool(book)["temporaryTool"]
    params = {p["name"]: p for p in tool["dynamicParameters"]}
    day = params["day"]["schema"]
    assert {"enum": ["mon", "tue"], "type": "string"} in day["anyOf"]
    guests = params["guests"]["schema"]
    assert {"items": {"type": "string"}, "type": "array"} in guests["anyOf"]
    assert all(p["location"] == "PARAMETER_LOCATION_BODY" for p in params.values())
    assert not any(p["required"] for p in params.values())
    assert tool["client"] == {}


def test_a_raw_tool_without_properties_has_no_parameters() -> None:
    tool = to_selected_tool(ping)["temporaryTool"]
    assert (tool["modelToolName"], tool["dynamicParameters"]) == ("ping", [])


def test_per_tool_settings_and_a_capped_timeout() -> None:
    [booked, pinged] = to_selected_tools(
        [book, ping],
        timeout=60,
        settings={"book": {"precomputable": True, "default_reaction": "speaks-once"}},
    )
    assert booked["temporaryTool"]["timeout"] == "40s"
    assert booked["temporaryTool"]["precomputable"] is True
    assert booked["temporaryTool"]["defaultReaction"] == "AGENT_REACTION_SPEAKS_ONCE"
    assert "precomputable" not in pinged["temporaryTool"]
    with pytest.raises(ValueError, match="default_reaction"):
        to_selected_tool(book, default_reaction="shouts")
