"""The multipart request bodies of the audio routes, for /openapi.json, generated from the request
models so that schema-driven clients and fuzzers see every field with its type, enum and bounds.

The routes parse their own forms, so FastAPI cannot infer these bodies; each route declares one
through `openapi_extra`. A form has no null: optional fields are simply left out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from engines.languages import LANGUAGES
from engines.registry import OPENAI_NAMES

# What validators check beyond the field types (see app/protocol.py), stated for the schema.
_OVERRIDES: dict[str, dict[str, Any]] = {
    # OpenAI's names, or a deployment's own model names.
    "model": {"anyOf": [{"type": "string", "enum": list(OPENAI_NAMES)}, {"type": "string"}]},
    "language": {"type": "string", "enum": sorted(LANGUAGES)},
    "known_speaker_references": {
        "type": "array",
        "maxItems": 4,
        "items": {"type": "string", "pattern": "^data:audio/[^;,]+;base64,"},
    },
}


def multipart_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})
    properties = {}
    for name, prop in schema["properties"].items():
        prop = _without_nulls(_inlined(prop, defs))
        if name in _OVERRIDES:
            prop = {**_OVERRIDES[name], **({"default": prop["default"]} if "default" in prop else {})}
        properties[name] = prop
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": schema.get("required", []), "properties": properties},
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            },
        }
    }


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inlined(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inlined(v, defs) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    return node


def _without_nulls(prop: dict[str, Any]) -> dict[str, Any]:
    prop = dict(prop)
    if prop.get("default", ...) is None:
        del prop["default"]
    if "anyOf" in prop:
        options = [o for o in prop["anyOf"] if o.get("type") != "null"]
        del prop["anyOf"]
        prop = {**options[0], **prop} if len(options) == 1 else {"anyOf": options, **prop}
    return prop
