"""The official OpenAPI snapshot as JSON Schema, to judge what the stand-in accepts and returns.

OpenAPI 3.0 marks nullable fields with ``nullable: true``; JSON Schema spells that as a union
with null, so the snapshot is rewritten once on load. The snapshot lives beside the clone
(``../shared/docs``), as in CI; the tests skip if it is absent.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

SNAPSHOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "docs" / "ultravox-openapi.yaml"


def _json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _definitions() -> dict[str, Any]:
    if not SNAPSHOT.exists():
        pytest.skip(f"OpenAPI snapshot not found at {SNAPSHOT}")
    spec = yaml.safe_load(SNAPSHOT.read_text())
    defs: dict[str, Any] = _json_schema(spec["components"]["schemas"])
    # Django REST Framework renders a call without an agent as ``"agent": null``; the schema
    # requires the field but does not mark it nullable.
    defs["Call"]["properties"]["agent"] = {
        "anyOf": [defs["Call"]["properties"]["agent"], {"type": "null"}]
    }
    return defs


def validator(name: str) -> jsonschema.Draft202012Validator:
    defs = _definitions()
    return jsonschema.Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{name}"})


def errors(name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(name).iter_errors(instance)
    ]


START_CALL = "ultravox.v1.StartCallRequest"
START_AGENT_CALL = "ultravox.v1.StartAgentCallRequest"
CALL = "Call"
