"""The slash commands of the interactive chat: ``/set``, ``/show``, ``/clear``, ``/bye``, ``/?``.

In a chat kept on the server, ``/set parameter`` and ``/set system`` are stored with the
chat (so they apply to every later turn, and when it is resumed), and ``/clear`` starts a
new chat on the server, leaving the old one as it was.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from ollm.cli.chats import start_chat
from ollm.cli.client import ClientError, OllamaClient
from ollm.cli.common import print_table
from ollm.cli.render import model_details, parse_parameters
from ollm.cli.session import NOT_CHAT_PARAMS, PARAMETERS, ChatSession, ParameterError

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message."""

SET_HELP = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats"""

SHOW_HELP = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template"""

SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + c            Stop the reply being written
  Ctrl + d            Exit (on an empty line)
  Ctrl + a / Ctrl + e Move to the beginning / end of the line
  Ctrl + w            Delete the word before the cursor
  Up / Down           Earlier / later messages"""


def parameter_help() -> str:
    """``/set parameter`` on its own: every parameter and what it takes."""
    width = max(len(f"{name} {arg}") for name, (_, arg, _) in PARAMETERS.items())
    lines = [
        f"  /set parameter {f'{name} {arg}':<{width}}  {text}"
        for name, (_, arg, text) in PARAMETERS.items()
    ]
    return "Parameters:\n" + "\n".join(lines)


@dataclass
class SlashCommands:
    """Runs one slash command against a session; :meth:`run` says whether to go on."""

    session: ChatSession
    client: OllamaClient
    console: Console

    def say(self, text: str) -> None:
        """Print plain text (never interpreted as Rich markup)."""
        self.console.print(escape(text))

    def run(self, line: str) -> bool:
        """Handle ``line`` (starting with ``/``); ``False`` means leave the chat."""
        command, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if command in ("/bye", "/exit"):
            return False
        if command == "/clear":
            self.clear()
        elif command == "/set":
            self.set(rest)
        elif command == "/show":
            self.show(rest)
        elif command in ("/?", "/help"):
            self.say(SHORTCUTS if rest == "shortcuts" else HELP)
        else:
            self.say(f"Unknown command '{command}'. Type /? for help")
        return True

    def error(self, exc: ClientError) -> None:
        """Show a failed request; the chat goes on."""
        self.console.print(f"[red]Error:[/red] {escape(str(exc))}")

    def clear(self) -> None:
        """Forget the conversation; on the server, that means a new chat."""
        if self.session.chat_id is None:
            self.session.clear()
            self.say("Cleared session context")
            return
        old = self.session.chat_id
        try:
            chat = start_chat(self.client, self.session)
        except ClientError as exc:
            self.error(exc)
            return
        # Never wrapped: an id split over two lines cannot be copied.
        self.console.print(
            escape(
                f"Started a new chat on the server: {chat['id']}\n"
                f"The previous one is kept; resume it with: ollm run {self.session.model} "
                f"--chat {old}"
            ),
            soft_wrap=True,
        )

    def set(self, rest: str) -> None:
        """``/set parameter|system|format|noformat|verbose|quiet``."""
        what, _, value = rest.partition(" ")
        value = value.strip()
        if what == "parameter":
            self.set_parameter(value)
        elif what == "system":
            self.set_system(value or None)
        elif what in ("format", "noformat") and self.session.chat_id is not None:
            self.say("Formats are not available in a chat kept on the server.")
        elif what == "format" and value == "json":
            self.session.format = "json"
            self.say("Set format to 'json' mode.")
        elif what == "noformat":
            self.session.format = None
            self.say("Disabled format.")
        elif what in ("verbose", "quiet"):
            self.session.verbose = what == "verbose"
            self.say("Set 'verbose' mode." if what == "verbose" else "Set 'quiet' mode.")
        else:
            self.say(SET_HELP)

    def set_system(self, value: str | None) -> None:
        """``/set system``: here, and stored with the chat when the server keeps it."""
        if self.session.chat_id is not None:
            try:
                self.client.update_chat(self.session.chat_id, system_prompt=value)
            except ClientError as exc:
                self.error(exc)
                return
        self.session.system = value
        self.say("Set system message." if value else "Cleared system message.")

    def set_parameter(self, text: str) -> None:
        """``/set parameter NAME VALUE...``."""
        try:
            words = shlex.split(text)
        except ValueError:  # an unbalanced quote: take the words as typed
            words = text.split()
        if not words:
            self.say(parameter_help())
            return
        if self.session.chat_id is not None and words[0] in NOT_CHAT_PARAMS:
            self.say(f"'{words[0]}' is set by the server for chats it keeps.")
            return
        before = dict(self.session.options)
        try:
            value = self.session.set_parameter(words[0], words[1:])
            if self.session.chat_id is not None:
                self.client.update_chat(self.session.chat_id, params=self.session.chat_params())
        except ParameterError as exc:
            self.say(str(exc))
            return
        except ClientError as exc:
            self.session.options = before
            self.error(exc)
            return
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        self.say(f"Set parameter '{words[0]}' to '{shown}'")

    def show(self, what: str) -> None:
        """``/show info|license|parameters|system|template``."""
        if what not in ("info", "license", "parameters", "system", "template"):
            self.say(SHOW_HELP)
            return
        if what == "system" and self.session.system:
            self.say(self.session.system)
            return
        try:
            details = self.client.show(self.session.model)
        except ClientError as exc:
            self.error(exc)
            return
        if what == "info":
            print_table(self.console, model_details(details))
        elif what == "parameters":
            self.show_parameters(details.get("parameters"))
        else:
            missing = f"No {'prompt ' if what == 'template' else ''}{what} was specified"
            self.say(details.get(what) or f"{missing} for this model.")

    def show_parameters(self, model_parameters: str | None) -> None:
        """The model's own defaults, then what was set in this session."""
        model_pairs = parse_parameters(model_parameters)
        user_pairs = [
            (name, ", ".join(value) if isinstance(value, list) else str(value))
            for name, value in self.session.options.items()
        ]
        if not model_pairs and not user_pairs:
            self.say("No parameters were specified for this model.")
        for title, pairs in (
            ("Model defined parameters:", model_pairs),
            ("User defined parameters:", user_pairs),
        ):
            if pairs:
                self.say(title + "".join(f"\n{name:<30} {value}" for name, value in pairs))
