"""The JSON schema a forced tool call is decoded under.

With ``tool_choice`` "required" or a named function, the reply must be a call, so ollm
does not hope the model writes one: it decodes under a grammar (built by the backend
from this schema, as for JSON output) that only admits ``{"name": ..., "arguments": ...}``
with one of the tools' names and arguments matching that tool's parameter schema. The
reply is then a bare JSON call, which :mod:`ollm.chat.tool_calls` parses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ollm.chat.messages import ToolSpec

_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


def tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """A schema admitting exactly one call to one of ``tools``."""
    options = [_one_call(tool) for tool in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _one_call(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": tool.name},
            "arguments": _arguments_schema(tool.parameters),
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _arguments_schema(parameters: Mapping[str, Any]) -> dict[str, Any]:
    # An empty or type-less schema would admit any JSON value; arguments are an object.
    schema = dict(parameters) if parameters else dict(_ANY_OBJECT)
    schema.setdefault("type", "object")
    return schema
