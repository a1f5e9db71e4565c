"""The ``ollm`` CLI driven as a person would: real processes, a real terminal, a real server.

One-shot commands run as subprocesses; the interactive chat runs in a pseudo-terminal
(``pty``), so line editing, echo and Ctrl+C (``\\x03`` through the terminal, which the
kernel turns into SIGINT) behave as they do for a person. The model is the bundled
SmolLM2: replies are checked for properties, never for exact prose.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_server
from hf_mirror import HubMirror, smollm2_gguf

from ollm.services.models import bundled

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
COMMAND_TIMEOUT = 120.0  # one command, including a cold model load
STEP_TIMEOUT = 90.0  # one step of the interactive session
PROMPT = ">>> "
SPINNER = re.compile(r"[\u2800-\u28ff]\n?")  # Braille spinner frames (erased on a real screen)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[=>()][0-9A-B]?")


def client_env(base_url: str) -> dict[str, str]:
    """The environment of a person pointing ``OLLM_HOST`` at the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLM_")}
    env.update({"OLLM_HOST": base_url, "TERM": "xterm-256color", "COLUMNS": "120"})
    return env


def ollm(base_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ollm ARGS`` to completion, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "ollm", *args],
        env=client_env(base_url),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


class Terminal:
    """A process on a pseudo-terminal: type into it, wait for what it prints.

    A reader thread drains the terminal continuously (a full pty would block the
    program); :meth:`expect` searches the output with escape sequences and carriage
    returns removed, from where the previous match ended.
    """

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal
            os.execve(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self._raw = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._changed = threading.Condition()
        self._closed = False
        self.position = 0
        self.exit_status: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed its side
                data = b""
            with self._changed:
                if not data:
                    self._closed = True
                    self._changed.notify_all()
                    return
                self._raw += self._decoder.decode(data)
                self._changed.notify_all()

    @property
    def text(self) -> str:
        """Everything printed so far, as a person would read it."""
        return SPINNER.sub("", ANSI.sub("", self._raw).replace("\r", ""))

    def send(self, keys: str) -> None:
        """Type ``keys`` (``\\r`` is Enter, ``\\x03`` Ctrl+C, ``\\x04`` Ctrl+D)."""
        os.write(self.fd, keys.encode())

    def line(self, text: str) -> None:
        """Type a line and press Enter."""
        self.send(text + "\r")

    def wait_for(self, found: Callable[[str], int | None], timeout: float, what: str) -> int:
        """Wait until ``found(text after position)`` gives an offset; move past it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                offset = found(self.text[self.position :])
                if offset is not None:
                    self.position += offset
                    return self.position
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    tail = self.text[self.position :][-1500:]
                    pytest.fail(f"never saw {what}; output since the last match:\n{tail}")
                self._changed.wait(remaining)

    def expect(self, pattern: str, timeout: float = STEP_TIMEOUT) -> re.Match[str]:
        """Wait for the regular expression ``pattern``; return its match."""
        matches: list[re.Match[str]] = []

        def found(text: str) -> int | None:
            match = re.search(pattern, text)
            if match is None:
                return None
            matches.append(match)
            return match.end()

        self.wait_for(found, timeout, repr(pattern))
        return matches[-1]

    def until_prompt(self, timeout: float = STEP_TIMEOUT) -> str:
        """Everything printed up to the next ``>>>`` prompt (which is consumed)."""
        start = self.position
        self.expect(re.escape(PROMPT), timeout)
        return self.text[start : self.position - len(PROMPT)]

    def wait_until_blocked(self, timeout: float = 10.0) -> None:
        """Wait until the program sleeps waiting for input (Linux: ``/proc/PID/wchan``).

        Python's ``input()`` prints the prompt a moment before it starts waiting; a
        Ctrl+C that lands in between is only noticed at the next key. A person is never
        that fast; a test is, so it waits for the program to really be waiting.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                wchan = Path(f"/proc/{self.pid}/wchan").read_text()
            except OSError:
                wchan = ""
            if not wchan or wchan == "0":  # not reported here: a person's pause instead
                time.sleep(1.0)
                return
            if "poll" in wchan or "select" in wchan:
                return
            time.sleep(0.02)
        pytest.fail(f"never waited for input:\n{self.text[-1500:]}")

    def wait_exit(self, timeout: float) -> int:
        """The exit code, once the program ends by itself within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = os.waitstatus_to_exitcode(status)
                return self.exit_status
            time.sleep(0.05)
        pytest.fail(f"still running after {timeout:.0f} s:\n{self.text[-1500:]}")

    def close(self) -> None:
        """Kill the program if it is still running; release the terminal."""
        if self.exit_status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def chat(live_server: str) -> Iterator[Terminal]:
    """``ollm run smollm2:135m`` in a terminal, at its first prompt."""
    terminal = Terminal([sys.executable, "-m", "ollm", "run", MODEL], client_env(live_server))
    try:
        terminal.until_prompt(COMMAND_TIMEOUT)
        yield terminal
    finally:
        terminal.close()


def reply_to(terminal: Terminal, message: str) -> str:
    """Send ``message``; the reply as shown, up to the next prompt (echo removed)."""
    terminal.line(message)
    terminal.expect(re.escape(message.splitlines()[-1]) + r"\n")  # the echo of Enter
    return terminal.until_prompt().strip()


# -- one-shot commands -----------------------------------------------------------------


def test_run_with_a_prompt_prints_an_answer_and_exits(live_server):
    result = ollm(live_server, "run", MODEL, "Say hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "no answer"
    assert result.stdout.endswith("\n")
    assert "Traceback" not in result.stderr


def test_run_reads_a_piped_prompt(live_server):
    result = ollm(live_server, "run", MODEL, "--verbose", stdin="What color is the sky?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    counts = re.search(r"^eval count:\s+(\d+) token", result.stderr, re.MULTILINE)
    assert counts and int(counts.group(1)) > 0, result.stderr


def test_list_shows_the_bundled_models(live_server):
    result = ollm(live_server, "list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "ID", "SIZE", "MODIFIED"]
    names = {row[0] for row in rows[1:]}
    assert {"smollm2:135m", "gemma3:270m"} <= names
    for row in rows[1:]:
        assert re.fullmatch(r"[0-9a-f]{12}", row[1]), row  # ID: a digest prefix
        assert row[3] in {"B", "KB", "MB", "GB"}, row  # SIZE: "98 MB"


def test_ps_shows_a_loaded_model(live_server):
    assert ollm(live_server, "run", MODEL, "Hi").returncode == 0  # loaded now, if not before
    result = ollm(live_server, "ps")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    [row] = [line for line in lines[1:] if line.split()[0] == MODEL]
    assert "CPU" in row
    assert re.search(r"from now|Forever", row), row


def test_show_prints_the_model_details(live_server):
    result = ollm(live_server, "show", MODEL)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["Model"] in rows
    assert ["architecture", "llama"] in rows
    assert any(row[:2] == ["context", "length"] and row[2].isdigit() for row in rows)
    assert any(row[:1] == ["quantization"] for row in rows)


def test_an_unknown_model_is_a_clear_error(live_server):
    result = ollm(live_server, "run", "no-such-model:1b", "hi")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
    assert "no-such-model" in result.stderr and "Traceback" not in result.stderr
    shown = ollm(live_server, "show", "no-such-model:1b")
    assert shown.returncode == 1 and shown.stderr.startswith("Error: ")


def test_without_a_server_every_command_says_so():
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for args in (["list"], ["ps"], ["run", MODEL, "hi"]):
            result = ollm(url, *args)
            assert result.returncode == 1
            assert result.stderr.strip() == (
                f"ollm server is not running at {url} — start it with `ollm serve`"
            )


# -- the interactive chat --------------------------------------------------------------


def test_interactive_chat_in_a_terminal(chat):
    chat.line("/set parameter temperature 0")
    chat.expect(r"Set parameter 'temperature' to '0\.0'")
    chat.until_prompt()

    # A message: the reply streams to the screen, then the prompt comes back.
    assert reply_to(chat, "Name three colors.")

    # A multi-line block: continuation prompts, one message; verbose shows the timings.
    chat.line("/set verbose")
    chat.until_prompt()
    chat.line('"""')
    chat.expect(r"\.\.\. ")
    chat.line("Repeat these two words:")
    chat.expect(r"\.\.\. ")
    chat.line('apple banana"""')
    block_reply = chat.until_prompt()
    assert "eval rate:" in block_reply and "tokens/s" in block_reply

    chat.line("/clear")
    chat.expect("Cleared session context")
    chat.until_prompt()

    # Ctrl+C at an empty prompt says how to leave, and stays.
    chat.wait_until_blocked()
    chat.send("\x03")
    chat.expect("Use Ctrl \\+ d or /bye to exit.")
    chat.until_prompt()

    # Ctrl+C during a long reply: text was already streaming when it was pressed; the
    # reply stops (no timings: it never finished) and the prompt returns.
    chat.line("/set parameter num_predict 1500")
    chat.until_prompt()
    chat.line("/set parameter seed 7")  # at temperature 0 this essay runs past 1500 tokens
    chat.until_prompt()
    chat.line("Write a long, detailed essay about the history of the Roman Empire.")
    chat.expect(r"Roman Empire\.\n")
    chat.wait_for(
        lambda text: len(text) if len(re.sub(r"\s", "", text)) >= 20 else None,
        STEP_TIMEOUT,
        "20 characters of reply",
    )
    assert PROMPT not in chat.text[chat.position :]  # still writing: this is streaming
    chat.send("\x03")
    interrupted = chat.until_prompt(timeout=30)
    assert "eval rate:" not in interrupted

    # The chat still works after the interruption.
    chat.line("/set parameter num_predict 64")
    chat.until_prompt()
    assert reply_to(chat, "Say OK.")

    chat.line("/bye")
    assert chat.wait_exit(timeout=15) == 0


def test_ctrl_d_leaves_the_chat(chat):
    chat.send("\x04")
    assert chat.wait_exit(timeout=15) == 0


def test_interactive_show_and_help(chat):
    chat.line("/show info")
    info = chat.until_prompt()
    assert "architecture" in info and "llama" in info
    chat.line("/?")
    assert "/bye" in chat.until_prompt()
    chat.line("/bye")
    assert chat.wait_exit(timeout=15) == 0


def test_a_base_model_without_a_chat_template_completes_each_message(live_server):
    terminal = Terminal(
        [sys.executable, "-m", "ollm", "run", "gemma3:270m"], client_env(live_server)
    )
    try:
        terminal.expect("has no chat template", COMMAND_TIMEOUT)
        terminal.until_prompt()
        terminal.line("/set parameter num_predict 8")
        terminal.until_prompt()
        assert reply_to(terminal, "The capital of France is")
        terminal.line("/bye")
        assert terminal.wait_exit(timeout=15) == 0
    finally:
        terminal.close()


def test_stop_unloads_a_running_model(live_server):
    assert ollm(live_server, "run", MODEL, "Hi").returncode == 0
    result = ollm(live_server, "stop", MODEL)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30
    while MODEL in ollm(live_server, "ps").stdout:  # unloading may finish a moment later
        assert time.monotonic() < deadline, "still loaded after ollm stop"
        time.sleep(0.5)
    again = ollm(live_server, "stop", MODEL)
    assert again.returncode == 1 and "couldn't find model" in again.stderr
    # An empty piped prompt only loads the model (and leaves it loaded for later tests).
    loaded = ollm(live_server, "run", MODEL, stdin="")
    assert loaded.returncode == 0 and loaded.stdout == ""
    assert MODEL in ollm(live_server, "ps").stdout


def test_cp_and_rm(live_server):
    copied = ollm(live_server, "cp", MODEL, "cli-copy:test")
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.strip() == f"copied '{MODEL}' to 'cli-copy:test'"
    assert "cli-copy:test" in ollm(live_server, "list").stdout
    removed = ollm(live_server, "rm", "cli-copy:test")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == "deleted 'cli-copy:test'"
    assert "cli-copy:test" not in ollm(live_server, "list").stdout
    refused = ollm(live_server, "rm", MODEL)  # a bundled model
    assert refused.returncode == 1 and refused.stderr.startswith("Error: ")
    assert MODEL in ollm(live_server, "list").stdout


# -- pull, from a fake Hugging Face Hub on loopback ------------------------------------

HUB_REPO = "TestOrg/SmolLM2-135M-Instruct-GGUF"
PULL_NAME = f"hf.co/{HUB_REPO}:Q4_1"


@pytest.fixture(scope="module")
def pull_server(tmp_path_factory: pytest.TempPathFactory, ollm_home: Path) -> Iterator[str]:
    """A server whose pulls go to a :class:`HubMirror` that serves SmolLM2 slowly."""
    home = tmp_path_factory.mktemp("cli-pull-home")
    gemma = bundled.locate(bundled.GEMMA3, ollm_home / "models")  # assembled once per session
    assert gemma is not None
    (home / "models" / "bundled").mkdir(parents=True)
    (home / "models" / "bundled" / gemma.name).symlink_to(gemma)
    with HubMirror() as hub:
        mirrored = hub.add_file(HUB_REPO, "SmolLM2-135M-Instruct-Q4_1.gguf", smollm2_gguf())
        mirrored.delay = 0.02  # per MiB: a couple of seconds, so the bar has time to move
        env = {
            "OLLM_HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(home / "hf-home"),
            "OLLM_PRELOAD_DEFAULT_MODEL": "false",
            "OLLM_THREADS": "2",
        }
        with run_server(home, home.parent / "cli-pull-server.log", **env) as base_url:
            yield base_url


def test_pull_in_a_terminal_draws_a_moving_bar(pull_server):
    terminal = Terminal([sys.executable, "-m", "ollm", "pull", PULL_NAME], client_env(pull_server))
    try:
        assert terminal.wait_exit(COMMAND_TIMEOUT) == 0, terminal.text
        terminal.expect("pulling manifest")
        terminal.expect(r"pulling [0-9a-f]{12}")
        terminal.expect("success")
    finally:
        terminal.close()
    frames = set(re.findall(r"(\d+\.\d+)/(\d+\.\d+) MB", terminal.text))
    assert len(frames) >= 2, terminal.text  # the bar was redrawn as bytes arrived
    done, total = max(frames, key=lambda frame: float(frame[0]))
    assert done == total

    pulled = [
        line.split()[0]
        for line in ollm(pull_server, "list").stdout.splitlines()
        if line.startswith("hf.co/")
    ]
    assert len(pulled) == 1
    removed = ollm(pull_server, "rm", pulled[0])
    assert removed.returncode == 0, removed.stderr
    assert "hf.co/" not in ollm(pull_server, "list").stdout


def test_pull_piped_prints_plain_lines_and_errors_exit_1(pull_server):
    result = ollm(pull_server, "pull", PULL_NAME)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "pulling manifest" and lines[-1] == "success"
    assert "\x1b" not in result.stdout  # no escape codes when not a terminal
    missing = ollm(pull_server, "pull", "hf.co/TestOrg/no-such-repo")
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: ") and "Traceback" not in missing.stderr


# -- a server that wants an API key ----------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory, ollm_home: Path
) -> Iterator[tuple[str, Path]]:
    """A server started with auth on (its URL and home), over a home holding one account."""
    home = tmp_path_factory.mktemp("cli-auth-home")
    gemma = bundled.locate(bundled.GEMMA3, ollm_home / "models")
    assert gemma is not None
    (home / "models" / "bundled").mkdir(parents=True)
    (home / "models" / "bundled" / gemma.name).symlink_to(gemma)
    env = {"OLLM_AUTH": "true", "OLLM_PRELOAD_DEFAULT_MODEL": "false", "OLLM_THREADS": "2"}
    added = subprocess.run(
        [sys.executable, "-m", "ollm", "users", "add", "alice", "--admin", "--password-stdin"],
        env={**client_env("unused"), "OLLM_HOME": str(home)},
        input="correct horse battery staple\n",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert added.returncode == 0, added.stderr
    with run_server(home, home.parent / "cli-auth-server.log", **env) as base_url:
        yield base_url, home


def test_commands_send_the_api_key(auth_server):
    url, home = auth_server
    created = subprocess.run(
        [sys.executable, "-m", "ollm", "keys", "create", "--user", "alice"],
        env={**client_env("unused"), "OLLM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()

    refused = ollm(url, "list")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: ") and "OLLM_API_KEY" in refused.stderr

    listed = ollm(url, "list", "--api-key", key)
    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout
    answered = ollm(url, "run", MODEL, "Say hi", "--api-key", key)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip()
