"""What a model made with ``/api/create`` adds to its weights: Ollama's Modelfile layers.

A preset is a system prompt, a chat template, a license, default sampling parameters and a
preset history (Ollama's ``SYSTEM``, ``TEMPLATE``, ``LICENSE``, ``PARAMETER``, ``MESSAGE``).
It is stored with the model's name in the manifest (``ManifestRecord.preset``), so a name
and what it means are written, copied and deleted together.

Requests for the model get them as defaults: the system prompt when the request brings
none (:func:`conversation`), the parameters for every option the request leaves out (the
dialect applies them: their names are Ollama's), the template in place of the GGUF's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollm.chat.messages import ChatMessage, Role

# Ollama's ``/api/show`` pads parameter names to this width in its text form.
_NAME_WIDTH = 30


@dataclass(frozen=True, slots=True)
class ModelPreset:
    """The Modelfile-ish metadata of a created model (everything optional).

    ``parent`` is the model it was made from (empty when made from an uploaded file);
    ``parameters`` maps Ollama option names (``temperature``, ``num_predict``, ``stop``,
    ...) to JSON values; ``messages`` are (role, content) pairs put before each
    conversation.
    """

    parent: str = ""
    system: str | None = None
    template: str | None = None
    license: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[tuple[Role, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The manifest's form: only what is set."""
        data: dict[str, Any] = {}
        if self.parent:
            data["parent"] = self.parent
        for key in ("system", "template", "license"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.parameters:
            data["parameters"] = dict(self.parameters)
        if self.messages:
            data["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        return data

    @classmethod
    def from_json(cls, data: object) -> ModelPreset | None:
        """The preset a manifest record holds; None for none, or for one it cannot read."""
        if not isinstance(data, dict) or not data:
            return None
        strings = {k: data.get(k) for k in ("system", "template", "license")}
        parameters = data.get("parameters") or {}
        raw_messages = data.get("messages") or []
        if not isinstance(parameters, dict) or not isinstance(raw_messages, list):
            return None
        messages = []
        for item in raw_messages:
            if not isinstance(item, dict) or item.get("role") not in (
                "system",
                "user",
                "assistant",
            ):
                return None
            messages.append((item["role"], str(item.get("content") or "")))
        return cls(
            parent=str(data.get("parent") or ""),
            system=strings["system"] if isinstance(strings["system"], str) else None,
            template=strings["template"] if isinstance(strings["template"], str) else None,
            license=strings["license"] if isinstance(strings["license"], str) else None,
            parameters=dict(parameters),
            messages=tuple(messages),
        )

    def derive(
        self,
        *,
        parent: str,
        system: str | None = None,
        template: str | None = None,
        license: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        messages: Sequence[tuple[Role, str]] | None = None,
    ) -> ModelPreset:
        """A preset made from this one, as Ollama layers a new model over its base: what is
        given replaces (an empty string clears), parameters merge over the base's, what is
        left out (None) is inherited."""

        def pick(new: str | None, old: str | None) -> str | None:
            return old if new is None else (new or None)

        return ModelPreset(
            parent=parent,
            system=pick(system, self.system),
            template=pick(template, self.template),
            license=pick(license, self.license),
            parameters={**self.parameters, **(parameters or {})},
            messages=self.messages if messages is None else tuple(messages),
        )

    @property
    def is_empty(self) -> bool:
        """Whether it adds nothing to the weights (a plain copy)."""
        texts = self.system or self.template or self.license
        return not (texts or self.parameters or self.messages)

    def parameters_text(self) -> str:
        """The parameters as ``/api/show`` writes them: one ``name value`` line each
        (a list, like ``stop``, one line per item), names padded, strings quoted."""
        lines = []
        for name in sorted(self.parameters):
            value = self.parameters[name]
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{name:<{_NAME_WIDTH}} {_go_value(item)}")
        return "\n".join(lines)

    def modelfile(self, source: str) -> str:
        """A Modelfile that would make this model again, ``FROM source``."""
        lines = ["# Modelfile generated by ollm", f"FROM {source}"]
        if self.template is not None:
            lines.append(f"TEMPLATE {_quoted(self.template)}")
        if self.system is not None:
            lines.append(f"SYSTEM {_quoted(self.system)}")
        for name in sorted(self.parameters):
            value = self.parameters[name]
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {name} {_modelfile_value(item)}")
        for role, content in self.messages:
            lines.append(f"MESSAGE {role} {_quoted(content)}")
        if self.license is not None:
            lines.append(f"LICENSE {_quoted(self.license)}")
        return "\n".join(lines) + "\n"


def conversation(preset: ModelPreset | None, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """``messages`` as the model sees them: its system prompt first unless the request
    has a system message of its own, then its preset history, then the request's turns
    (after the request's leading system messages)."""
    if preset is None or not (preset.system or preset.messages):
        return list(messages)
    own_system = any(m.role == "system" for m in messages)
    lead = 0
    while lead < len(messages) and messages[lead].role == "system":
        lead += 1
    system = list(messages[:lead])
    if not own_system and preset.system:
        system = [ChatMessage(role="system", content=preset.system)]
    history = [ChatMessage(role=role, content=content) for role, content in preset.messages]
    return [*system, *history, *messages[lead:]]


def _go_value(value: object) -> str:
    """A value as Go's ``%#v`` prints a decoded JSON value (what Ollama's show uses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)


def _modelfile_value(value: object) -> str:
    """A ``PARAMETER`` value: strings quoted when they hold spaces or quotes."""
    if isinstance(value, str):
        plain = value and not any(c.isspace() or c == '"' for c in value)
        return value if plain else json.dumps(value, ensure_ascii=False)
    return _go_value(value)


def _quoted(text: str) -> str:
    """A Modelfile argument: triple-quoted, as Ollama writes multi-line ones."""
    return f'"""{text}"""'
