"""``ollm list / ps / show / pull / rm / cp / stop`` against a scripted server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from test_cli_fakes import FakeServer
from typer.testing import CliRunner

from ollm.cli.common import CliContext
from ollm.cli.main import app

SMOLLM2 = {
    "name": "smollm2:135m",
    "model": "smollm2:135m",
    "size": 98_000_000,
    "digest": "sha256:0123456789abcdef0123",
    "details": {
        "format": "gguf",
        "family": "llama",
        "parameter_size": "134.52M",
        "quantization_level": "Q4_1",
    },
}
GEMMA3 = {
    "name": "gemma3:270m",
    "model": "gemma3:270m",
    "size": 253_000_000,
    "digest": "fedcba9876543210fedc",
    "details": {"format": "gguf", "family": "gemma3"},
}


def iso(delta: timedelta) -> str:
    """A timestamp ``delta`` from now, as the server writes them."""
    return (datetime.now(UTC) + delta).isoformat()


def invoke(server: FakeServer, *args: str, env: dict[str, str] | None = None):
    """Run ``ollm ARGS`` with the fake server as its transport."""
    return CliRunner().invoke(app, list(args), obj=CliContext(transport=server.transport), env=env)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def test_list_shows_each_model_with_id_size_and_age(server):
    models = [
        {**SMOLLM2, "modified_at": iso(-timedelta(days=15))},
        {**GEMMA3, "modified_at": iso(-timedelta(minutes=5, seconds=3))},
    ]
    server.json("GET", "/api/tags", {"models": models})
    result = invoke(server, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert lines[1].split() == ["smollm2:135m", "0123456789ab", "98", "MB", "2", "weeks", "ago"]
    assert lines[2].split() == ["gemma3:270m", "fedcba987654", "253", "MB", "5", "minutes", "ago"]


def test_list_with_no_models_prints_just_the_header(server):
    server.json("GET", "/api/tags", {"models": []})
    result = invoke(server, "list")
    assert result.exit_code == 0
    assert result.stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"]


def test_long_names_are_never_truncated(server):
    name = "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M-with-a-very-long-suffix"
    server.json("GET", "/api/tags", {"models": [{**SMOLLM2, "name": name}]})
    result = invoke(server, "list")
    assert name in result.stdout.replace("\n", "")
    assert "…" not in result.stdout


def test_ps_shows_loaded_models_and_when_they_expire(server):
    models = [
        {**SMOLLM2, "size_vram": 0, "expires_at": iso(timedelta(minutes=4, seconds=30))},
        {**GEMMA3, "expires_at": "2318-01-01T00:00:00Z", "context_length": 2048},
    ]
    server.json("GET", "/api/ps", {"models": models})
    result = invoke(server, "ps")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert lines[1].split()[0] == "smollm2:135m"
    assert "100% CPU" in lines[1] and "4 minutes from now" in lines[1]
    assert lines[2].split()[0] == "gemma3:270m"
    assert "2048" in lines[2] and "Forever" in lines[2]


def test_show_prints_model_details_parameters_and_license_start(server):
    server.json(
        "POST",
        "/api/show",
        {
            "details": SMOLLM2["details"],
            "model_info": {
                "general.architecture": "llama",
                "general.parameter_count": 134515008,
                "llama.context_length": 8192,
                "llama.embedding_length": 576,
            },
            "capabilities": ["completion"],
            "parameters": 'stop "<|im_end|>"\ntemperature 0.2',
            "license": "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/",
            "template": "{{ .Prompt }}",
        },
    )
    result = invoke(server, "show", "smollm2:135m")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    for expected in (
        ["Model"],
        ["architecture", "llama"],
        ["parameters", "134.52M"],
        ["context", "length", "8192"],
        ["embedding", "length", "576"],
        ["quantization", "Q4_1"],
        ["Capabilities"],
        ["completion"],
        ["Parameters"],
        ["stop", '"<|im_end|>"'],
        ["temperature", "0.2"],
        ["License"],
        ["Apache", "License"],
        ["..."],
    ):
        assert expected in rows, f"{expected} missing from:\n{result.stdout}"
    assert "licenses/" not in result.stdout  # only the start of the license
    assert server.bodies("/api/show") == [{"model": "smollm2:135m"}]


def test_show_of_an_unknown_model_is_an_error_with_exit_1(server):
    server.json("POST", "/api/show", {"error": "model 'nope' not found"}, status=404)
    result = invoke(server, "show", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: model 'nope' not found"
    assert "Traceback" not in result.output


def test_pull_draws_status_lines_and_a_progress_bar(server):
    digest = "sha256:" + "ab" * 32
    server.stream(
        "POST",
        "/api/pull",
        [
            {"status": "pulling manifest"},
            {"status": f"pulling {digest}", "digest": digest, "total": 2_000_000, "completed": 0},
            {"status": f"pulling {digest}", "digest": digest, "total": 2_000_000},
            {
                "status": f"pulling {digest}",
                "digest": digest,
                "total": 2_000_000,
                "completed": 2_000_000,
            },
            {"status": "verifying sha256 digest"},
            {"status": "writing manifest"},
            {"status": "success"},
        ],
    )
    result = invoke(server, "pull", "hf.co/org/repo:Q4_K_M")
    assert result.exit_code == 0, result.output
    out = result.stdout
    order = ["pulling manifest", f"pulling {'ab' * 6}", "verifying sha256 digest", "success"]
    positions = [out.find(text) for text in order]
    assert -1 not in positions and positions == sorted(positions), out
    assert "2.0/2.0 MB" in out  # the bar's last frame: everything downloaded
    assert server.bodies("/api/pull") == [{"model": "hf.co/org/repo:Q4_K_M", "stream": True}]


def test_pull_failing_half_way_reports_the_error(server):
    server.stream("POST", "/api/pull", [{"status": "pulling manifest"}, {"error": "not found"}])
    result = invoke(server, "pull", "hf.co/org/missing")
    assert result.exit_code == 1
    assert "pulling manifest" in result.stdout
    assert result.stderr.strip() == "Error: not found"


def test_rm_deletes_each_model(server):
    server.json("DELETE", "/api/delete", None)
    result = invoke(server, "rm", "a:1", "b:2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["deleted 'a:1'", "deleted 'b:2'"]
    assert server.bodies("/api/delete") == [{"model": "a:1"}, {"model": "b:2"}]


def test_rm_of_a_bundled_model_shows_the_servers_refusal(server):
    server.json("DELETE", "/api/delete", {"error": "bundled models cannot be deleted"}, 400)
    result = invoke(server, "rm", "smollm2:135m")
    assert result.exit_code == 1
    assert "Error: bundled models cannot be deleted" in result.stderr


def test_cp_copies(server):
    server.json("POST", "/api/copy", None)
    result = invoke(server, "cp", "smollm2:135m", "mine:latest")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "copied 'smollm2:135m' to 'mine:latest'"
    assert server.bodies("/api/copy") == [{"source": "smollm2:135m", "destination": "mine:latest"}]


def test_stop_unloads_with_keep_alive_zero(server):
    server.json("GET", "/api/ps", {"models": [SMOLLM2]})
    server.json("POST", "/api/generate", {"model": "smollm2:135m", "done": True})
    result = invoke(server, "stop", "smollm2:135m")
    assert result.exit_code == 0, result.output
    assert server.bodies("/api/generate") == [
        {"model": "smollm2:135m", "stream": False, "keep_alive": 0}
    ]


def test_stop_of_a_model_that_is_not_loaded_says_so(server):
    server.json("GET", "/api/ps", {"models": [SMOLLM2]})
    result = invoke(server, "stop", "gemma3:270m")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'Error: couldn\'t find model "gemma3:270m" to stop'
    assert server.bodies("/api/generate") == []


@pytest.mark.parametrize(
    "args", [["list"], ["ps"], ["show", "m"], ["pull", "m"], ["rm", "m"], ["cp", "a", "b"]]
)
def test_every_command_says_when_no_server_is_running(args):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = CliRunner().invoke(
        app,
        args,
        obj=CliContext(transport=httpx.MockTransport(refuse)),
        env={"OLLM_HOST": "127.0.0.1:9"},
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "ollm server is not running at http://127.0.0.1:9 — start it with `ollm serve`"
    )
    assert "Traceback" not in result.output


def test_host_option_beats_the_environment(server):
    seen = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"models": []})

    result = CliRunner().invoke(
        app,
        ["list", "--host", "box:1234"],
        obj=CliContext(transport=httpx.MockTransport(record)),
        env={"OLLM_HOST": "other:1"},
    )
    assert result.exit_code == 0
    assert seen == ["http://box:1234/api/tags"]


def test_the_api_key_is_sent_as_a_bearer_token():
    seen = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"models": []})

    result = CliRunner().invoke(
        app,
        ["ps"],
        obj=CliContext(transport=httpx.MockTransport(record)),
        env={"OLLM_API_KEY": "ollm-secret"},
    )
    assert result.exit_code == 0
    assert seen == ["Bearer ollm-secret"]


def test_a_401_says_how_to_authenticate(server):
    server.json("GET", "/api/tags", {"error": "authentication required"}, status=401)
    result = invoke(server, "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: authentication required")
    assert "OLLM_API_KEY" in result.stderr and "ollm keys create" in result.stderr
