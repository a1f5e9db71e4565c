"""A small synchronous client for the server's Ollama-style API (``/api/...``).

The CLI is an ordinary HTTP client of a running ``ollm serve``: it never imports the
server. Every failure becomes a :class:`ClientError` whose message is fit to print, so
commands can report it in one place. The transport can be injected (``httpx.MockTransport``
in unit tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

DEFAULT_HOST = "http://127.0.0.1:8000"
DEFAULT_PORT = 8000

# Plain requests get a generous read timeout (a show or an unload may wait on a model);
# streams get none, because a busy server may take long between two tokens.
REQUEST_TIMEOUT = httpx.Timeout(300.0, connect=5.0)
STREAM_TIMEOUT = httpx.Timeout(None, connect=5.0)


class ClientError(Exception):
    """Base of the client's errors; the message is meant for the person at the terminal."""


class ServerNotRunningError(ClientError):
    """Nothing answers at the server's address."""

    def __init__(self, base_url: str) -> None:
        super().__init__(f"ollm server is not running at {base_url} — start it with `ollm serve`")
        self.base_url = base_url


class ServerError(ClientError):
    """The server answered with an error (``{"error": "..."}``)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthenticationError(ServerError):
    """The server wants an API key (or a valid one)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        hint = "Set OLLM_API_KEY or pass --api-key; `ollm keys create` makes a key."
        super().__init__(f"{message}\n{hint}", status_code)


class ConnectionLostError(ClientError):
    """The server went away in the middle of an answer."""


def normalize_host(value: str | None) -> str:
    """The base URL for ``OLLM_HOST``, read the way ``ollama`` reads ``OLLAMA_HOST``.

    ``host``, ``host:port``, ``:port`` and full URLs are accepted. Without a scheme the
    scheme is ``http`` and the port 8000; with an explicit scheme the port defaults to that
    scheme's own (80 or 443). A path is kept, for servers behind a reverse proxy.
    """
    text = (value or "").strip().rstrip("/")
    if not text:
        return DEFAULT_HOST
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, default_port = "http", text, DEFAULT_PORT
    else:
        scheme = scheme.lower()
        default_port = 443 if scheme == "https" else 80
    parts = urlsplit(f"{scheme}://{rest}")
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ClientError(f"invalid OLLM_HOST {value!r}: {exc}") from None
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{parts.path}"


def _error_message(response: httpx.Response) -> str:
    """The ``error`` field of an error body, or a plain description of the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str | dict):
        error = body["error"]
        # An OpenAI-shaped body (``{"error": {"message": ...}}``) from an older route.
        return error.get("message", str(error)) if isinstance(error, dict) else error
    text = response.text.strip()
    return text or f"{response.status_code} {response.reason_phrase}"


def _server_error(response: httpx.Response) -> ServerError:
    """The error for an error response, by status: 401 says how to authenticate."""
    kind = AuthenticationError if response.status_code == 401 else ServerError
    return kind(_error_message(response), response.status_code)


class OllamaClient:
    """Calls to ``/api/*``; streamed endpoints yield one parsed JSON object per line."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, transport=transport, timeout=REQUEST_TIMEOUT
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the parsed JSON answer (``None`` for an empty body)."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.ConnectError:
            raise ServerNotRunningError(self.base_url) from None
        except httpx.TransportError as exc:
            raise ConnectionLostError(f"lost the connection to {self.base_url}: {exc}") from None
        if response.is_error:
            raise _server_error(response)
        if not response.content:
            return None
        try:
            # A server that streams anyway sends NDJSON: the last line is the answer.
            return json.loads(response.text.strip().splitlines()[-1])
        except ValueError:
            raise ServerError(f"unexpected answer from the server: {response.text[:200]}") from None

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield each NDJSON object; an ``error`` object raises.

        Closing the iterator early (or an exception in the consumer, such as Ctrl+C)
        closes the connection, which tells the server to stop generating.
        """
        try:
            with self._http.stream("POST", path, json=body, timeout=STREAM_TIMEOUT) as response:
                if response.is_error:
                    response.read()
                    raise _server_error(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield _parse_event(line)
        except httpx.ConnectError:
            raise ServerNotRunningError(self.base_url) from None
        except httpx.TransportError as exc:
            raise ConnectionLostError(f"lost the connection to {self.base_url}: {exc}") from None

    # -- endpoints ------------------------------------------------------------------

    def tags(self) -> list[dict[str, Any]]:
        """Models the server knows (``GET /api/tags``)."""
        return list((self._request("GET", "/api/tags") or {}).get("models") or [])

    def ps(self) -> list[dict[str, Any]]:
        """Models loaded right now (``GET /api/ps``)."""
        return list((self._request("GET", "/api/ps") or {}).get("models") or [])

    def show(self, model: str) -> dict[str, Any]:
        """Details of one model (``POST /api/show``)."""
        return self._request("POST", "/api/show", {"model": model}) or {}

    def delete(self, model: str) -> None:
        """Delete a model (``DELETE /api/delete``)."""
        self._request("DELETE", "/api/delete", {"model": model})

    def copy(self, source: str, destination: str) -> None:
        """Copy a model under a new name (``POST /api/copy``)."""
        self._request("POST", "/api/copy", {"source": source, "destination": destination})

    def load(self, model: str, keep_alive: str | int | None = None) -> dict[str, Any]:
        """Load a model without generating (``/api/generate`` with no prompt)."""
        body: dict[str, Any] = {"model": model, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return self._request("POST", "/api/generate", body) or {}

    def unload(self, model: str) -> dict[str, Any]:
        """Unload a model now (``/api/generate`` with ``keep_alive: 0`` and no prompt)."""
        return self.load(model, keep_alive=0)

    def pull(self, name: str) -> Iterator[dict[str, Any]]:
        """Download a model; yields Ollama's progress objects (``POST /api/pull``)."""
        return self._stream("/api/pull", {"model": name, "stream": True})

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        system: str | None = None,
        options: dict[str, Any] | None = None,
        keep_alive: str | int | None = None,
        format: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream a completion of ``prompt`` (``POST /api/generate``), for models
        without a chat template."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "stream": True}
        if system:
            body["system"] = system
        body.update(_extras(options, keep_alive, format))
        return self._stream("/api/generate", body)

    def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        options: dict[str, Any] | None = None,
        keep_alive: str | int | None = None,
        format: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream a chat reply (``POST /api/chat``): message deltas, then a ``done`` object."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        body.update(_extras(options, keep_alive, format))
        return self._stream("/api/chat", body)


def _extras(
    options: dict[str, Any] | None, keep_alive: str | int | None, format: str | None
) -> dict[str, Any]:
    """The optional request fields shared by chat and generate, when set."""
    extras: dict[str, Any] = {}
    if options:
        extras["options"] = options
    if keep_alive is not None:
        extras["keep_alive"] = keep_alive
    if format:
        extras["format"] = format
    return extras


def _parse_event(line: str) -> dict[str, Any]:
    """One NDJSON line; ``{"error": ...}`` (sent after headers went out) raises."""
    try:
        event = json.loads(line)
    except ValueError:
        raise ServerError(f"unexpected line from the server: {line[:200]}") from None
    if not isinstance(event, dict):
        raise ServerError(f"unexpected line from the server: {line[:200]}")
    if "error" in event:
        error = event["error"]
        raise ServerError(error.get("message", str(error)) if isinstance(error, dict) else error)
    return event
