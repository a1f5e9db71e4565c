"""The state of one ``ollm run`` conversation: model, system message, options, history."""

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


class ParameterError(ValueError):
    """A ``/set parameter`` the person has to correct; the message says how."""


@dataclass
class ChatSession:
    """Everything sent with each turn. The history lives here, in this process."""

    model: str
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    keep_alive: str | None = None
    format: str | None = None
    verbose: bool = False
    completion_only: bool = False  # no chat template: each message is completed on its own

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

    def begin_turn(self, text: str) -> None:
        """Add the person's message to the history (a completion keeps no history)."""
        if not self.completion_only:
            self.messages.append({"role": "user", "content": text})

    def end_turn(self, reply: str | None) -> None:
        """Add the reply; with no reply (an error, or stopped before any text), forget
        the unanswered message, so user and assistant turns keep alternating."""
        if self.completion_only:
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
