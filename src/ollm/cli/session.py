"""The state of one ``ollm run`` conversation: model, system message, options, history.

The history lives in this process, or, for a chat kept on the server (``--chat ID``,
``--save``), on the server: then only the chat's id is kept here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Options ``/set parameter`` accepts, with the type each value must parse as and its help.
PARAMETERS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "seed": (int, "<int>", "Random number seed"),
    "num_predict": (int, "<int>", "Max number of tokens to predict"),
    "top_k": (int, "<int>", "Pick from top k num of tokens"),
    "top_p": (float, "<float>", "Pick token based on sum of probabilities"),
    "min_p": (float, "<float>", "Pick token based on top token probability * min_p"),
    "num_ctx": (int, "<int>", "Set the context size"),
    "temperature": (float, "<float>", "Set creativity level"),
    "repeat_penalty": (float, "<float>", "How strongly to penalize repetitions"),
    "presence_penalty": (float, "<float>", "Penalize tokens already present"),
    "frequency_penalty": (float, "<float>", "Penalize tokens by how often they appeared"),
    "stop": (str, "<string> <string> ...", "Set the stop parameters"),
}


# ``/set parameter`` names that a chat kept on the server stores under another name, and
# those it has no place for (the server sizes the context window itself).
CHAT_PARAM_NAMES = {"num_predict": "max_tokens"}
NOT_CHAT_PARAMS = frozenset({"num_ctx"})


class ParameterError(ValueError):
    """A ``/set parameter`` the person has to correct; the message says how."""


@dataclass
class ChatSession:
    """Everything sent with each turn, and the history (unless ``chat_id`` is set: then
    the server keeps the history and the chat's settings, and each turn only sends the
    new message)."""

    model: str
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    keep_alive: str | None = None
    format: str | None = None
    verbose: bool = False
    completion_only: bool = False  # no chat template: each message is completed on its own
    chat_id: str | None = None  # a chat kept on the server (``/api/v1/chats``)

    def set_parameter(self, name: str, values: list[str]) -> Any:
        """Parse and store one option; returns the stored value."""
        if name not in PARAMETERS:
            raise ParameterError(f"Unknown parameter '{name}'. Type /set parameter for a list.")
        if not values:
            raise ParameterError(f"Usage: /set parameter {name} {PARAMETERS[name][1]}")
        if name == "stop":
            self.options["stop"] = list(values)
            return self.options["stop"]
        if len(values) != 1:
            raise ParameterError(f"Usage: /set parameter {name} {PARAMETERS[name][1]}")
        kind = PARAMETERS[name][0]
        try:
            value = kind(values[0])
        except ValueError:
            raise ParameterError(
                f"Couldn't set parameter: '{values[0]}' is not a valid {kind.__name__}"
            ) from None
        self.options[name] = value
        return value

    @property
    def keeps_history(self) -> bool:
        """Whether this process keeps the history (not for completions, nor server chats)."""
        return not self.completion_only and self.chat_id is None

    def begin_turn(self, text: str) -> None:
        """Add the person's message to the history (a completion keeps no history)."""
        if self.keeps_history:
            self.messages.append({"role": "user", "content": text})

    def end_turn(self, reply: str | None) -> None:
        """Add the reply; with no reply (an error, or stopped before any text), forget
        the unanswered message, so user and assistant turns keep alternating."""
        if not self.keeps_history:
            return
        if reply:
            self.messages.append({"role": "assistant", "content": reply})
        else:
            self.messages.pop()

    def clear(self) -> None:
        """Forget the conversation (the system message and options stay)."""
        self.messages.clear()

    def request_messages(self) -> list[dict[str, str]]:
        """The messages of the next request: system message first, then the history."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.messages]

    def chat_params(self) -> dict[str, Any]:
        """The options as a server-side chat's ``params`` (``num_ctx`` has no place there)."""
        return {
            CHAT_PARAM_NAMES.get(name, name): value
            for name, value in self.options.items()
            if name not in NOT_CHAT_PARAMS
        }

    def adopt_chat(self, chat: dict[str, Any]) -> None:
        """Continue ``chat`` (as ``/api/v1/chats`` describes it): its id, system prompt and
        stored params become this session's."""
        self.chat_id = str(chat["id"])
        self.system = chat.get("system_prompt") or None
        back = {param: option for option, param in CHAT_PARAM_NAMES.items()}
        params = chat.get("params") or {}
        self.options = {back.get(k, k): v for k, v in params.items() if v is not None}
