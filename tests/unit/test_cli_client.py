"""The CLI's HTTP client: addresses, errors, NDJSON streams; and the humanized values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from test_cli_fakes import FakeServer, chat_events, ndjson

from ollm.cli.client import (
    ConnectionLostError,
    OllamaClient,
    ServerError,
    ServerNotRunningError,
    normalize_host,
)
from ollm.cli.humanize import human_ago, human_duration, human_size, human_until, parse_time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "http://127.0.0.1:8000"),
        ("", "http://127.0.0.1:8000"),
        ("localhost", "http://localhost:8000"),
        ("0.0.0.0:9000", "http://0.0.0.0:9000"),
        (":9000", "http://127.0.0.1:9000"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com/", "https://example.com:443"),
        ("https://example.com:8443/ollm", "https://example.com:8443/ollm"),
        ("[::1]:8001", "http://[::1]:8001"),
        ("HTTP://Box:1234", "http://box:1234"),
    ],
)
def test_host_is_read_like_ollama_host(value, expected):
    assert normalize_host(value) == expected


def test_a_refused_connection_means_the_server_is_not_running():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = OllamaClient("http://127.0.0.1:9", transport=httpx.MockTransport(refuse))
    with pytest.raises(ServerNotRunningError) as info:
        client.tags()
    assert "not running at http://127.0.0.1:9" in str(info.value)
    assert "ollm serve" in str(info.value)
    with pytest.raises(ServerNotRunningError):
        list(client.chat("m", []))


def test_a_real_refused_port_is_reported_as_not_running():
    from socket import socket

    with socket() as sock:  # bound but never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(ServerNotRunningError):
            OllamaClient(f"http://127.0.0.1:{port}").ps()


def test_error_bodies_become_server_errors_with_their_message():
    server = FakeServer()
    server.json("POST", "/api/show", {"error": "model 'nope' not found"}, status=404)
    client = OllamaClient("http://x", transport=server.transport)
    with pytest.raises(ServerError) as info:
        client.show("nope")
    assert str(info.value) == "model 'nope' not found"
    assert info.value.status_code == 404


def test_an_openai_shaped_or_plain_error_body_still_gives_a_message():
    server = FakeServer()
    server.json("GET", "/api/tags", {"error": {"message": "boom", "type": "server_error"}}, 500)
    server.handler("GET", "/api/ps", lambda _r: httpx.Response(502, text="Bad Gateway"))
    client = OllamaClient("http://x", transport=server.transport)
    with pytest.raises(ServerError, match=r"^boom$"):
        client.tags()
    with pytest.raises(ServerError, match="Bad Gateway"):
        client.ps()


def test_streams_yield_each_object_and_send_the_request_body():
    server = FakeServer()
    server.stream("POST", "/api/chat", chat_events("Hel", "lo"))
    client = OllamaClient("http://x", transport=server.transport)
    events = list(
        client.chat(
            "m", [{"role": "user", "content": "hi"}], options={"temperature": 0}, keep_alive="1m"
        )
    )
    assert [e["message"]["content"] for e in events] == ["Hel", "lo", ""]
    assert events[-1]["done"] is True
    [body] = server.bodies("/api/chat")
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "options": {"temperature": 0},
        "keep_alive": "1m",
    }


def test_an_error_in_the_middle_of_a_stream_raises():
    server = FakeServer()
    server.stream("POST", "/api/pull", [{"status": "pulling manifest"}, {"error": "disk full"}])
    client = OllamaClient("http://x", transport=server.transport)
    events = client.pull("hf.co/a/b")
    assert next(events) == {"status": "pulling manifest"}
    with pytest.raises(ServerError, match="disk full"):
        next(events)


def test_an_error_status_on_a_stream_raises_before_any_event():
    server = FakeServer()
    server.json("POST", "/api/chat", {"error": "model 'x' not found"}, status=404)
    client = OllamaClient("http://x", transport=server.transport)
    with pytest.raises(ServerError, match="not found") as info:
        list(client.chat("x", []))
    assert info.value.status_code == 404


def test_a_connection_dropped_mid_stream_is_reported_as_lost():
    def dropped():
        yield ndjson(chat_events("a"))[:40]
        raise httpx.ReadError("connection reset")

    server = FakeServer()
    server.handler("POST", "/api/chat", lambda _r: httpx.Response(200, content=dropped()))
    client = OllamaClient("http://x", transport=server.transport)
    with pytest.raises(ConnectionLostError, match="lost the connection"):
        list(client.chat("m", []))


def test_unload_posts_generate_with_keep_alive_zero_and_no_prompt():
    server = FakeServer()
    server.json("POST", "/api/generate", {"model": "m", "response": "", "done": True})
    OllamaClient("http://x", transport=server.transport).unload("m")
    assert server.bodies("/api/generate") == [{"model": "m", "stream": False, "keep_alive": 0}]


def test_a_plain_request_answered_with_ndjson_takes_the_last_object():
    server = FakeServer()
    server.stream("POST", "/api/generate", [{"done": False}, {"done": True, "x": 1}])
    assert OllamaClient("http://x", transport=server.transport).load("m") == {"done": True, "x": 1}


def test_sizes_are_decimal_like_ollama():
    assert human_size(512) == "512 B"
    assert human_size(270_000_000) == "270 MB"
    assert human_size(1_234_000_000) == "1.2 GB"
    assert human_size(None) == ""


def test_timestamps_with_nanoseconds_and_offsets_parse():
    parsed = parse_time("2026-11-22T05:50:31.123456789+01:00")
    assert parsed == datetime(2026, 11, 22, 4, 50, 31, 123456, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("not a time") is None


def test_ages_and_expiries_read_like_ollama():
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def iso(delta: timedelta) -> str:
        return (now + delta).isoformat()

    assert human_ago(iso(-timedelta(seconds=30)), now) == "30 seconds ago"
    assert human_ago(iso(-timedelta(minutes=1, seconds=10)), now) == "About a minute ago"
    assert human_ago(iso(-timedelta(days=15)), now) == "2 weeks ago"
    assert human_until(iso(timedelta(minutes=4, seconds=59)), now) == "4 minutes from now"
    assert human_until(iso(timedelta(days=365 * 300)), now) == "Forever"
    assert human_until(iso(-timedelta(seconds=1)), now) == "Stopping..."
    assert human_until(None, now) == "Never"


def test_durations_from_nanoseconds():
    assert human_duration(1_520_000_000) == "1.52s"
    assert human_duration(230_400_000) == "230.4ms"
    assert human_duration(None) == "0s"
