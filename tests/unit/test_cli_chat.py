"""``ollm run``: one-shot answers, and the interactive chat driven by scripted input."""

from __future__ import annotations

import io
from collections.abc import Iterable

import httpx
import pytest
from rich.console import Console
from test_cli_fakes import FakeServer, chat_events, interrupting_stream, ndjson
from typer.testing import CliRunner

from ollm.cli.client import OllamaClient
from ollm.cli.common import CliContext
from ollm.cli.main import app
from ollm.cli.repl import EXIT_HINT, ChatRepl, UserInput, read_input
from ollm.cli.session import ChatSession, ParameterError

# -- reading input ---------------------------------------------------------------------


def reader(lines: Iterable[str | type[BaseException]]):
    """A ``read_line`` that returns ``lines`` in turn (raising any exception class given)
    and records the prompts it was shown; ``EOFError`` once the script runs out."""
    script = iter(lines)
    prompts: list[str] = []

    def read_line(prompt: str) -> str:
        prompts.append(prompt)
        item = next(script, EOFError)
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        return item

    read_line.prompts = prompts  # type: ignore[attr-defined]
    return read_line


def test_a_plain_line_is_one_input():
    assert read_input(reader(["hello"])) == UserInput("hello")


def test_a_triple_quote_block_spans_lines_until_a_line_ends_with_triple_quotes():
    read_line = reader(['"""first', "second", 'third"""'])
    assert read_input(read_line) == UserInput("first\nsecond\nthird", block=True)
    assert read_line.prompts == [">>> ", "... ", "... "]


def test_a_block_on_its_own_lines_drops_the_empty_delimiter_lines():
    assert read_input(reader(['"""', "/not a command", "", "x", '"""'])) == UserInput(
        "/not a command\n\nx", block=True
    )
    assert not UserInput("/not a command", block=True).is_command


def test_a_one_line_block_and_a_multi_line_system_message():
    assert read_input(reader(['"""just this"""'])).text == "just this"
    entry = read_input(reader(['/set system """You are', 'terse."""']))
    assert entry.text == "/set system You are\nterse."
    assert entry.is_command


# -- the session -----------------------------------------------------------------------


def test_parameters_are_parsed_to_their_types():
    session = ChatSession("m")
    assert session.set_parameter("temperature", ["0.2"]) == 0.2
    assert session.set_parameter("num_predict", ["16"]) == 16
    assert session.set_parameter("stop", ["<|im_end|>", "\n\n"]) == ["<|im_end|>", "\n\n"]
    assert session.options == {
        "temperature": 0.2,
        "num_predict": 16,
        "stop": ["<|im_end|>", "\n\n"],
    }


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("temprature", ["1"], "Unknown parameter 'temprature'"),
        ("top_k", ["high"], "'high' is not a valid int"),
        ("seed", [], "Usage: /set parameter seed <int>"),
        ("top_p", ["0.1", "0.2"], "Usage: /set parameter top_p <float>"),
    ],
)
def test_bad_parameters_are_refused_with_a_message(name, values, message):
    session = ChatSession("m")
    with pytest.raises(ParameterError, match=message):
        session.set_parameter(name, values)
    assert session.options == {}


def test_the_system_message_leads_and_survives_clear():
    session = ChatSession("m", system="Be brief.")
    session.messages.append({"role": "user", "content": "hi"})
    assert session.request_messages()[0] == {"role": "system", "content": "Be brief."}
    session.clear()
    assert session.request_messages() == [{"role": "system", "content": "Be brief."}]


# -- the interactive loop --------------------------------------------------------------


class Chat:
    """A ChatRepl on a fake server, with its output captured."""

    def __init__(self, server: FakeServer, lines: Iterable[str | type[BaseException]]) -> None:
        self.server = server
        self.out = io.StringIO()
        console = Console(file=self.out, width=100, highlight=False)
        client = OllamaClient("http://x", transport=server.transport)
        self.session = ChatSession("smollm2:135m")
        self.repl = ChatRepl(self.session, client, console, self.out, read_line=reader(lines))

    def run(self) -> str:
        self.repl.run()
        return self.out.getvalue()


def test_a_conversation_streams_replies_and_keeps_history():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("Hel", "lo!"))
    chat = Chat(server, ["hi", "again", "/bye"])
    output = chat.run()
    assert output.count("Hello!\n\n") == 2
    first, second = server.bodies("/api/chat")
    assert first["messages"] == [{"role": "user", "content": "hi"}]
    assert second["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "again"},
    ]
    assert first["stream"] is True and first["model"] == "smollm2:135m"


def test_set_parameter_system_and_clear_shape_the_next_request():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("ok"))
    lines = [
        "one",
        "/set parameter temperature 0",
        "/set parameter seed 42",
        "/set parameter stop <|im_end|> END",
        "/set system Answer in one word.",
        "/clear",
        '"""two',
        'lines"""',
        "/bye",
    ]
    output = Chat(server, lines).run()
    for expected in (
        "Set parameter 'temperature' to '0.0'",
        "Set parameter 'seed' to '42'",
        "Set parameter 'stop' to '<|im_end|>, END'",
        "Set system message.",
        "Cleared session context",
    ):
        assert expected in output
    last = server.bodies("/api/chat")[-1]
    assert last["options"] == {"temperature": 0.0, "seed": 42, "stop": ["<|im_end|>", "END"]}
    assert last["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "two\nlines"},
    ]


def test_ctrl_c_during_a_reply_stops_it_and_keeps_the_chat_going():
    server = FakeServer()
    partial = ndjson(chat_events("Once upon", " a time")[:2])
    streams = iter(
        [
            httpx.Response(200, content=interrupting_stream([partial])),
            httpx.Response(200, content=ndjson(chat_events("Fine."))),
        ]
    )
    server.handler("POST", "/api/chat", lambda _request: next(streams))
    output = Chat(server, ["tell a story", "shorter", "/bye"]).run()
    assert "Once upon a time\n\n" in output and "Fine." in output
    second = server.bodies("/api/chat")[1]
    # The partial reply stays in the history, so user and assistant turns alternate.
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == "Once upon a time"


def test_ctrl_c_before_any_text_forgets_the_unanswered_message():
    server = FakeServer()
    streams = iter(
        [
            httpx.Response(200, content=interrupting_stream([])),
            httpx.Response(200, content=ndjson(chat_events("ok"))),
        ]
    )
    server.handler("POST", "/api/chat", lambda _request: next(streams))
    Chat(server, ["first", "second", "/bye"]).run()
    assert server.bodies("/api/chat")[1]["messages"] == [{"role": "user", "content": "second"}]


def test_ctrl_c_at_the_prompt_says_how_to_leave_and_ctrl_d_leaves():
    output = Chat(FakeServer(), [KeyboardInterrupt]).run()  # then EOF (Ctrl+D)
    assert EXIT_HINT in output


def test_errors_are_shown_and_the_chat_goes_on():
    server = FakeServer()
    answers = iter(
        [
            httpx.Response(400, json={"error": "prompt too long for the context window"}),
            httpx.Response(200, content=ndjson(chat_events("ok"))),
        ]
    )
    server.handler("POST", "/api/chat", lambda _request: next(answers))
    output = Chat(server, ["x" * 50, "short", "/bye"]).run()
    assert "Error: prompt too long for the context window" in output
    assert server.bodies("/api/chat")[1]["messages"] == [{"role": "user", "content": "short"}]


def test_help_show_and_unknown_commands():
    server = FakeServer()
    server.json(
        "POST",
        "/api/show",
        {
            "details": {"family": "llama", "quantization_level": "Q4_1"},
            "parameters": "temperature 0.7",
            "template": "{{ .Prompt }}",
        },
    )
    lines = [
        "/?",
        "/show info",
        "/set parameter top_k 5",
        "/show parameters",
        "/show template",
        "/show license",
        "/set parameter",
        "/frobnicate",
        "/bye",
    ]
    output = Chat(server, lines).run()
    assert "/bye" in output and '"""' in output  # the help
    assert "quantization" in output and "Q4_1" in output
    assert "Model defined parameters:" in output and "temperature" in output
    assert "User defined parameters:" in output and "top_k" in output
    assert "{{ .Prompt }}" in output
    assert "No license was specified for this model." in output
    assert "/set parameter temperature <float>" in output
    assert "Unknown command '/frobnicate'. Type /? for help" in output


def test_completion_only_chat_sends_each_message_alone():
    server = FakeServer()
    server.stream("POST", "/api/generate", [{"response": "more"}, {"response": "", "done": True}])
    chat = Chat(server, ["/set system Be terse.", "/set parameter top_k 3", "one", "two"])
    chat.session.completion_only = True
    output = chat.run()
    assert output.count("more\n\n") == 2
    _first, second = server.bodies("/api/generate")
    assert second == {
        "model": "smollm2:135m",
        "prompt": "two",
        "system": "Be terse.",
        "stream": True,
        "options": {"top_k": 3},
    }
    assert chat.session.messages == []


def test_verbose_prints_timings_after_each_reply():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("a", "b", eval_duration=2_000_000_000))
    output = Chat(server, ["/set verbose", "go", "/bye"]).run()
    assert "eval count:" in output and "1.00 tokens/s" in output


# -- ollm run (one shot) ---------------------------------------------------------------


CHAT_MODEL_SHOW = {"template": "{{ .Prompt }}", "details": {"family": "llama"}}


def run_cli(server: FakeServer, *args: str, input: str | None = None):
    """``ollm run ARGS`` against ``server`` (a chat model unless ``/api/show`` says else)."""
    server.routes.setdefault(
        ("POST", "/api/show"), lambda _request: httpx.Response(200, json=CHAT_MODEL_SHOW)
    )
    return CliRunner().invoke(
        app, ["run", *args], input=input, obj=CliContext(transport=server.transport)
    )


def test_run_with_a_prompt_prints_the_answer_and_exits():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("Hi", " there"))
    result = run_cli(server, "smollm2:135m", "Say", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi there\n"
    [body] = server.bodies("/api/chat")
    assert body["messages"] == [{"role": "user", "content": "Say hi"}]


def test_run_reads_a_piped_prompt_and_joins_it_with_the_arguments():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("3"))
    result = run_cli(server, "m", "Count", "the", "lines.", input="a\nb\nc\n")
    assert result.exit_code == 0, result.output
    [body] = server.bodies("/api/chat")
    assert body["messages"][0]["content"] == "a\nb\nc\n\nCount the lines."


def test_run_verbose_and_keepalive():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("x", eval_duration=1_000_000_000))
    result = run_cli(server, "m", "go", "--verbose", "--keepalive", "10m")
    assert result.exit_code == 0
    assert "eval rate:" in result.stderr
    assert server.bodies("/api/chat")[0]["keep_alive"] == "10m"


def test_run_of_an_unknown_model_is_an_error():
    server = FakeServer()
    server.json("POST", "/api/show", {"error": "model 'nope' not found"}, status=404)
    result = run_cli(server, "nope", "hi")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: model 'nope' not found"


def test_a_model_without_a_chat_template_gets_a_plain_completion():
    server = FakeServer()
    server.json("POST", "/api/show", {"details": {"family": "gemma3"}})  # no template
    server.stream(
        "POST", "/api/generate", [{"response": " Paris."}, {"response": "", "done": True}]
    )
    result = run_cli(server, "gemma3:270m", "The capital of France is")
    assert result.exit_code == 0, result.output
    assert result.stdout == " Paris.\n"
    [body] = server.bodies("/api/generate")
    assert body == {"model": "gemma3:270m", "prompt": "The capital of France is", "stream": True}
    assert server.bodies("/api/chat") == []


def test_run_without_a_server():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = CliRunner().invoke(
        app,
        ["run", "m", "hi"],
        obj=CliContext(transport=httpx.MockTransport(refuse)),
        env={"OLLM_HOST": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 1
    assert "ollm server is not running at http://127.0.0.1:9" in result.stderr
