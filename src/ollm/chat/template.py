"""Render a conversation with the chat template stored in the model's GGUF metadata.

Templates are Jinja2 written for Hugging Face transformers, so they run in a sandbox
with the same helpers transformers provides (``raise_exception``, ``tojson``,
``strftime_now``) and ``trim_blocks``/``lstrip_blocks`` on, as transformers does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ollm.chat.messages import ChatMessage, ToolSpec
from ollm.errors import InvalidRequestError


def _raise_exception(message: str) -> None:
    raise InvalidRequestError(f"the model's chat template rejected the messages: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)


class ChatTemplate:
    """A compiled chat template plus the special-token strings it refers to."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(f"the model's chat template is invalid: {exc}") from exc
        self.bos_token = bos_token
        self.eos_token = eos_token
        # As llama.cpp and Ollama decide it: a template that never reads the ``tools``
        # variable has nowhere to put them, so the model was not trained to call any.
        self.supports_tools = "tools" in _variables(env, source)

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[ToolSpec] = (),
    ) -> str:
        """The prompt text for ``messages``, ending where the assistant's reply begins.

        ``tools`` are handed to the template as transformers does (a list of OpenAI-style
        function specs), and so are each message's tool calls and tool-result fields.
        """
        extra: dict[str, Any] = {"tools": [t.as_openai() for t in tools]} if tools else {}
        try:
            return self._template.render(
                messages=[_as_dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except InvalidRequestError:
            raise
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(f"the model's chat template failed: {exc}") from exc


def supports_tools(source: str | None) -> bool:
    """Whether a chat template has a place for tools (it reads the ``tools`` variable)."""
    if not source:
        return False
    return "tools" in _variables(ImmutableSandboxedEnvironment(extensions=[loopcontrols]), source)


def _variables(env: jinja2.Environment, source: str) -> set[str]:
    try:
        return meta.find_undeclared_variables(env.parse(source))
    except jinja2.TemplateError:
        return set()


def _as_dict(message: ChatMessage) -> dict[str, Any]:
    """A message the way Hugging Face chat templates read it."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": dict(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out
