"""LiveKit function tools as Ultravox temporary client tools (protocol reference §1.4).

Each top-level property becomes one BODY ``dynamicParameter`` whose ``schema`` is the property's
own JSON Schema, with ``$ref``s inlined and nothing else dropped: ``enum`` and ``items`` inside
``anyOf`` survive (the seed flattened them, D14). A raw tool without ``properties`` is a tool
without parameters.

`to_server_tools` checks the tools Ultravox runs itself (durable and built-in tools by name or
id, HTTP tools) that a call carries alongside the function tools.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from livekit.agents import llm
from livekit.agents.llm.utils import function_arguments_to_pydantic_model

from ..call import to_duration
from . import checks

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _inline(node: Any, defs: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.rsplit("/", 1)[1]
        if name in seen or name not in defs:
            return {k: v for k, v in node.items() if k != "$ref"}
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs, seen | {name})
    return {k: _inline(v, defs, seen) for k, v in node.items() if k not in ("title", "$defs")}


def _describe(
    tool: llm.FunctionTool[..., Any] | llm.RawFunctionTool[..., Any],
) -> tuple[str, str, dict[str, Any]]:
    if isinstance(tool, llm.RawFunctionTool):
        raw = tool.info.raw_schema
        return tool.info.name, str(raw.get("description") or ""), dict(raw.get("parameters") or {})
    schema = function_arguments_to_pydantic_model(tool).model_json_schema()
    return tool.info.name, tool.info.description or "", schema


_REACTIONS = {
    "speaks": "AGENT_REACTION_SPEAKS",
    "listens": "AGENT_REACTION_LISTENS",
    "speaks-once": "AGENT_REACTION_SPEAKS_ONCE",
}


def to_selected_tool(
    tool: llm.FunctionTool[..., Any] | llm.RawFunctionTool[..., Any],
    *,
    timeout: float | None = None,
    precomputable: bool | None = None,
    default_reaction: str | None = None,
) -> dict[str, Any]:
    """One ``selectedTools`` entry; ``timeout`` in seconds (API maximum 40), ``default_reaction``
    one of ``speaks``, ``listens``, ``speaks-once``."""
    name, description, schema = _describe(tool)
    defs = dict(schema.get("$defs") or {})
    required = set(schema.get("required") or ())
    parameters = [
        {
            "name": prop,
            "location": "PARAMETER_LOCATION_BODY",
            "schema": _inline(prop_schema, defs),
            "required": prop in required,
        }
        for prop, prop_schema in dict(schema.get("properties") or {}).items()
    ]
    definition: dict[str, Any] = {
        "modelToolName": name,
        "description": description,
        "dynamicParameters": parameters,
        "client": {},
    }
    if timeout is not None:
        definition["timeout"] = to_duration(min(timeout, 40.0))
    if precomputable is not None:
        definition["precomputable"] = precomputable
    if default_reaction is not None:
        if default_reaction not in _REACTIONS:
            raise ValueError(f"default_reaction must be one of {sorted(_REACTIONS)}")
        definition["defaultReaction"] = _REACTIONS[default_reaction]
    return {"temporaryTool": definition}


def to_selected_tools(
    tools: list[llm.Tool],
    *,
    timeout: float | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The function tools among ``tools``, converted; ``settings`` maps a tool name to its
    ``timeout``, ``precomputable`` and ``default_reaction``. Provider tools do not apply."""
    out = []
    for t in tools:
        if isinstance(t, (llm.FunctionTool, llm.RawFunctionTool)):
            own: dict[str, Any] = {"timeout": timeout, **(settings or {}).get(t.info.name, {})}
            out.append(to_selected_tool(t, **own))
    return out


def _tool_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not TOOL_NAME.match(value):
        raise ValueError(f"{name} must match {TOOL_NAME.pattern}, got {value!r}")
    return value


def _http_tool(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict (a BaseToolDefinition)")
    if value.get("http") is None or any(value.get(k) for k in ("client", "dataConnection")):
        raise ValueError(
            f"{name} must be an HTTP tool (set 'http'); client tools come from the agent's "
            "function tools"
        )
    _tool_name(f"{name}.modelToolName", value.get("modelToolName"))
    checks.check_json(name, value)
    return dict(value)


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict")
    checks.check_json(name, value)
    return dict(value)


_SELECTED: dict[str, checks.Field] = {
    "toolId": checks.text,
    "toolName": _tool_name,
    "temporaryTool": _http_tool,
    "nameOverride": _tool_name,
    "descriptionOverride": checks.text,
    "authTokens": checks.string_map,
    "parameterOverrides": _object,
}
_WHICH = ("toolId", "toolName", "temporaryTool")


def to_server_tools(specs: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``selectedTools`` entries for tools Ultravox runs: a string is a tool's name
    (``"hangUp"``), a dict a raw ``SelectedTool`` (``{"toolId": ...}``, an HTTP
    ``temporaryTool``, with ``nameOverride`` or ``parameterOverrides`` if wanted)."""
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, spec in enumerate(specs):
        where = f"server_tools[{i}]"
        tool = checks.fields(
            where, {"toolName": spec} if isinstance(spec, str) else spec, _SELECTED
        )
        chosen = [k for k in _WHICH if tool.get(k)]
        if len(chosen) != 1:
            raise ValueError(f"{where} must set exactly one of {', '.join(_WHICH)}")
        name = tool.get("nameOverride") or tool.get("toolName")
        name = name or (tool.get("temporaryTool") or {}).get("modelToolName")
        if name in names:
            raise ValueError(f"{where}: the tool name {name!r} is used twice")
        if name:
            names.add(name)
        out.append(tool)
    return out
