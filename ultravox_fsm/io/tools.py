"""LiveKit function tools as Ultravox temporary client tools (protocol reference §1.4).

Each top-level property becomes one BODY ``dynamicParameter`` whose ``schema`` is the property's
own JSON Schema, with ``$ref``s inlined and nothing else dropped: ``enum`` and ``items`` inside
``anyOf`` survive (the seed flattened them, D14). A raw tool without ``properties`` is a tool
without parameters.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import llm
from livekit.agents.llm.utils import function_arguments_to_pydantic_model

from ..call import to_duration


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
