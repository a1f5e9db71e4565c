"""Chat messages and tools as every API dialect hands them to the service layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: its name, what it does, and a JSON schema of its
    arguments (an object schema; ``{}`` means any object)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def as_openai(self) -> dict[str, Any]:
        """The ``{"type": "function", "function": {...}}`` shape chat templates expect."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = dict(self.parameters) or {"type": "object", "properties": {}}
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model made: an id the tool's result refers back to, the function's
    name, and its arguments as a JSON object."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn. An assistant turn may carry ``tool_calls``; a ``tool`` turn is a result,
    naming the call it answers (``tool_call_id``) and the function (``name``)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


# "auto": the model decides; "none": no call; "required": at least one call;
# any other string: a call to the function of that name.
ToolChoice = str
