"""Log lines: text or JSON, a request id per request, secrets never written."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ollm.api.http.request_id import RequestIdMiddleware, choose_request_id
from ollm.logs import REDACTED, logging_config, redact


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch):
    """Apply the server's logging config to a string buffer; yields a reader of its lines."""

    def configure(log_format: str) -> io.StringIO:
        buffer = io.StringIO()
        config = logging_config("debug", log_format)  # type: ignore[arg-type]
        config["handlers"]["default"]["stream"] = buffer
        logging.config.dictConfig(config)
        return buffer

    yield configure
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    logging.getLogger().handlers.clear()


def test_json_lines_carry_time_level_logger_message(captured) -> None:
    buffer = captured("json")
    logging.getLogger("ollm.test").warning("loaded %s in %d ms", "m", 12)
    entry = json.loads(buffer.getvalue().splitlines()[-1])
    assert entry["level"] == "warning" and entry["logger"] == "ollm.test"
    assert entry["message"] == "loaded m in 12 ms" and entry["time"].endswith("+00:00")
    assert "request_id" not in entry


def test_uvicorn_loggers_share_the_format(captured) -> None:
    buffer = captured("json")
    logging.getLogger("uvicorn.access").info('%s - "%s %s" %d', "127.0.0.1", "GET", "/x", 200)
    assert json.loads(buffer.getvalue().splitlines()[-1])["logger"] == "uvicorn.access"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("headers: {'authorization': 'Bearer abc.def'}", "abc.def"),
        ("Authorization: Bearer sk-live-123", "sk-live-123"),
        ("login password=hunter2 user=bob", "hunter2"),
        ('{"username": "bob", "password": "hunter2"}', "hunter2"),
        ("key ollm-0123456789ab_" + "x" * 43 + " used", "x" * 43),
        ("db postgresql+asyncpg://bob:hunter2@db/ollm", "hunter2"),
        ("GET /v1/models?api_key=s3cret&x=1", "s3cret"),
    ],
)
def test_secrets_are_redacted(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned and REDACTED in cleaned


def test_ordinary_lines_are_untouched() -> None:
    line = "request req-1: max_tokens=512 prompt_tokens=9 keep_alive=300"
    assert redact(line) == line


def test_redaction_applies_to_formatted_records(captured) -> None:
    buffer = captured("text")
    logging.getLogger("ollm.test").info("user %s password=%s", "bob", "hunter2")
    assert (
        "hunter2" not in buffer.getvalue() and "user bob password=[REDACTED]" in buffer.getvalue()
    )


def _app() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        logging.getLogger("ollm.test").info("serving")
        return PlainTextResponse(request.scope["state"]["request_id"])

    return Starlette(routes=[Route("/", hello)], middleware=[])


async def _get(headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=RequestIdMiddleware(_app()))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await client.get("/", headers=headers)


@pytest.mark.anyio
async def test_request_id_is_echoed_and_logged(captured) -> None:
    buffer = captured("json")
    response = await _get({"X-Request-ID": "client-id.42"})
    assert response.headers["x-request-id"] == "client-id.42" == response.text
    entries = [json.loads(line) for line in buffer.getvalue().splitlines()]
    (entry,) = [e for e in entries if e["logger"] == "ollm.test"]
    assert entry["message"] == "serving" and entry["request_id"] == "client-id.42"


@pytest.mark.anyio
async def test_insane_request_ids_are_replaced(captured) -> None:
    captured("text")
    response = await _get({"X-Request-ID": "a b\tc" + "x" * 200})
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-request-id"] == response.text


def test_choose_request_id() -> None:
    assert choose_request_id("abc-123") == "abc-123"
    assert choose_request_id(None) != choose_request_id(None)
    assert choose_request_id("x" * 129) != "x" * 129
