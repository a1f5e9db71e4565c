"""A small synchronous client for the server's Ollama-style API (``/api/...``) and for
the chats ollm keeps itself (``/api/v1/chats``).

The CLI is an ordinary HTTP client of a running ``ollm serve``: it never imports the
server. Every failure becomes a :class:`ClientError` whose message is fit to print, so
commands can report it in one place. The transport can be injected (``httpx.MockTransport``
in unit tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

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
    """The server answered with an error (``{"error": "..."}``, or ``{"error": {...}}``
    under ``/api/v1``, whose ``code`` names the error: ``chat_not_found``...)."""

    def __init__(
        self, message: str, status_code: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


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


def _error_code(response: httpx.Response) -> str | None:
    """The ``code`` of an ``/api/v1`` error envelope, if there is one."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _server_error(response: httpx.Response) -> ServerError:
    """The error for an error response, by status: 401 says how to authenticate."""
    if response.status_code == 401:
        return AuthenticationError(_error_message(response), response.status_code)
    return ServerError(_error_message(response), response.status_code, _error_code(response))


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

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One request; the parsed JSON answer (``None`` for an empty body)."""
        try:
            response = self._http.request(method, path, json=body, params=params)
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

    def _sse(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield each server-sent event's JSON until ``[DONE]``.

        An ``error`` event, or a ``done`` event that carries an error, raises. As with
        :meth:`_stream`, closing the iterator early closes the connection.
        """
        try:
            with self._http.stream("POST", path, json=body, timeout=STREAM_TIMEOUT) as response:
                if response.is_error:
                    response.read()
                    raise _server_error(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, ``event:`` lines
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    event = _parse_event(data)
                    error = event.get("error") if event.get("type") == "done" else None
                    if error:
                        raise ServerError(_describe_error(error), code=_code_of(error))
                    yield event
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

    # -- chats kept on the server (/api/v1) ------------------------------------------

    def list_chats(self, *, limit: int = 20, q: str | None = None) -> dict[str, Any]:
        """One page of the caller's chats, pinned first then most recently active
        (``GET /api/v1/chats``): ``{"items": [...], "total": N, ...}``."""
        params: dict[str, Any] = {"limit": limit}
        if q:
            params["q"] = q
        return self._request("GET", "/api/v1/chats", params=params) or {}

    def create_chat(self, model: str, **fields: Any) -> dict[str, Any]:
        """A new, empty chat with ``model`` (``POST /api/v1/chats``); ``fields`` are
        further :class:`ChatCreate` fields (``system_prompt``, ``params``)."""
        return self._request("POST", "/api/v1/chats", {"model": model, **fields}) or {}

    def get_chat(self, chat_id: str) -> dict[str, Any]:
        """The chat with its active branch (``GET /api/v1/chats/{id}``)."""
        return self._request("GET", f"/api/v1/chats/{_segment(chat_id)}") or {}

    def update_chat(self, chat_id: str, **fields: Any) -> dict[str, Any]:
        """Change the chat's model, system prompt or params (``PATCH``); fields left out
        stay as they are."""
        return self._request("PATCH", f"/api/v1/chats/{_segment(chat_id)}", fields) or {}

    def send_message(self, chat_id: str, content: str) -> Iterator[dict[str, Any]]:
        """Add a user turn and stream the reply (``POST /api/v1/chats/{id}/messages``):
        ``start``, ``queue``..., ``delta``..., then ``done`` events. Both turns are saved
        on the server; closing the stream early leaves the reply saved as interrupted."""
        path = f"/api/v1/chats/{_segment(chat_id)}/messages"
        return self._sse(path, {"content": content, "stream": True})

    def stop_reply(self, chat_id: str) -> dict[str, Any]:
        """Stop the chat's running reply, if any, and wait until it is saved."""
        return self._request("POST", f"/api/v1/chats/{_segment(chat_id)}/stop") or {}


def _segment(value: str) -> str:
    """``value`` as one URL path segment (an id typed by a person may hold anything)."""
    return quote(value, safe="")


def _describe_error(error: Any) -> str:
    """The message of an error value: a string, or an envelope with a ``message``."""
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)


def _code_of(error: Any) -> str | None:
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


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
    if "error" in event and event.get("type") is None:
        error = event["error"]
        raise ServerError(_describe_error(error), code=_code_of(error))
    return event
