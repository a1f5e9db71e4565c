"""Which names this server answers to, and which web pages may change anything on it.

- **Host** (DNS rebinding, the class of Ollama's CVE-2024-28224): a page on
  ``attacker.example`` whose name is re-pointed at 127.0.0.1 is, to the browser, the same
  origin as this server, so it could read every chat. Its requests still say
  ``Host: attacker.example``. Only loopback names (``localhost`` and ``*.localhost``,
  127.0.0.0/8, ``::1``), the address the server is bound to (``0.0.0.0``/``::`` for a
  wildcard bind), and the names listed in ``OLLM_ALLOWED_HOSTS`` are answered; any other
  ``Host`` is a 400 in the dialect's error shape. ``/health`` is exempt: liveness probes
  use the pod's address.
- **Origin** (cross-site writes): a browser names the page behind a request in ``Origin``
  (and, in newer browsers, ``Sec-Fetch-Site``). A state-changing request from a foreign
  page is a 403, whether or not ``Sec-Fetch-Site`` came along: a ``text/plain`` POST needs
  no CORS preflight, so without this check any page could post to a server on loopback.
  Trusted pages: this server's own origin, pages on an allowed host (any port: the web UI's
  dev server, a local proxy), and ``OLLM_CORS_ORIGINS``. ``Origin: null`` (sandboxed frames,
  ``file://``) is foreign. Requests without either header (curl, SDKs) are not browsers'
  cross-site requests and pass.

Plain ASGI, outside the routes, so every dialect is covered by one check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ollm.api.http.limits import error_response
from ollm.settings import Settings, split_host_port

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EXEMPT_PATHS = frozenset({"/health"})
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def host_name(value: str) -> str | None:
    """The name part of a ``Host`` header or an origin's netloc, lower-cased, without the
    port, brackets or a trailing dot; None when it does not parse."""
    if not value.strip():
        return None
    try:
        name, _ = split_host_port(value.strip())
    except ValueError:
        return None
    name = name.strip().lower().rstrip(".")
    return name or None


def is_loopback_name(name: str) -> bool:
    """``localhost``, a ``*.localhost`` name (RFC 6761: browsers resolve these to loopback
    themselves), or a loopback address."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """The names a server answers to: loopback, its bind address, and ``allowed``.

    An ``allowed`` entry is a name (``ollm.example.org``), a suffix that admits the name and
    its subdomains (``.example.org``), or ``*`` (any name: the operator checks Host
    elsewhere, e.g. in a reverse proxy).
    """

    def __init__(self, allowed: Iterable[str], *, bind_host: str = "127.0.0.1") -> None:
        self.any = False
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for entry in allowed:
            text = entry.strip().lower()
            if text == "*":
                self.any = True
            elif text.startswith("."):
                self.suffixes.append(text.rstrip("."))
            elif (name := host_name(text)) is not None:
                self.names.add(name)
        bind = bind_host.strip().strip("[]").lower()
        if bind in _WILDCARD_BINDS:
            # Clients on the machine itself often dial the wildcard (OLLM_HOST=0.0.0.0, as
            # with Ollama). An address is no DNS name, so no rebound page can send it.
            self.names.update({"0.0.0.0", "::"})
        else:
            self.names.add(bind)

    def allows(self, name: str | None) -> bool:
        """Whether a request naming ``name`` in its Host header is answered."""
        return name is not None and (self.any or self.names_host(name))

    def names_host(self, name: str | None) -> bool:
        """Whether ``name`` is loopback or one of the listed names (``*`` aside: a page's
        origin is trusted only by name, never by the wildcard)."""
        if name is None:
            return False
        if is_loopback_name(name) or name in self.names:
            return True
        return any(name == s[1:] or name.endswith(s) for s in self.suffixes)


class HostGuardMiddleware:
    """400 for a Host this server does not answer to; 403 for a write from a foreign page."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy, cors_origins: Iterable[str]) -> None:
        self.app = app
        self.policy = policy
        origins = [o.rstrip("/").lower() for o in cors_origins]
        self.any_origin = "*" in origins
        self.cors_origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        host = headers.get("host")
        host_ok = host is not None and self.policy.allows(host_name(host))
        if scope["type"] == "websocket":
            # A WebSocket handshake carries Host and Origin too; a refused one is closed
            # with 1008 (policy violation) before it is accepted.
            if not host_ok or self._foreign(headers, scope, websocket=True):
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if not host_ok:
            shown = (host or "")[:100]
            response = error_response(
                path,
                400,
                f"This server does not answer to the host name {shown!r}. If clients reach "
                "it by that name, add it to OLLM_ALLOWED_HOSTS.",
                code="host_not_allowed",
            )
            await response(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method not in SAFE_METHODS and self._foreign(headers, scope):
            response = error_response(
                path,
                403,
                "Cross-site requests may not change anything on this server: the page that "
                "sent it is not this server's own, nor listed in OLLM_CORS_ORIGINS.",
                error_type="permission_error",
                code="csrf_failed",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _foreign(self, headers: Headers, scope: Scope, *, websocket: bool = False) -> bool:
        """Whether the browser says another site made this request."""
        origin = headers.get("origin")
        if origin is None:
            return headers.get("sec-fetch-site", "").lower() == "cross-site"
        if websocket:  # the page's own origin is http(s), the socket's ws(s)
            scope = {**scope, "scheme": "https" if scope.get("scheme") == "wss" else "http"}
        origin = origin.strip().rstrip("/").lower()
        if self.any_origin or origin in self.cors_origins:
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return True  # "null", file://, app schemes
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        if origin == own:
            return False
        return not self.policy.names_host(host_name(parts.netloc))


def install_host_guard(app: Starlette, settings: Settings) -> None:
    """Add :class:`HostGuardMiddleware` for ``settings``' bind address and allowed hosts."""
    policy = HostPolicy(settings.allowed_hosts, bind_host=settings.host)
    app.add_middleware(HostGuardMiddleware, policy=policy, cors_origins=settings.cors_origins)
