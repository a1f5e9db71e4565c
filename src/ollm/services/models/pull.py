"""Pull GGUF models from the Hugging Face Hub (or any server speaking its API).

``hf.co/ORG/REPO[:QUANT]`` picks the repository's GGUF file whose name carries QUANT
(``Q4_K_M``, case-insensitive; without one, the only GGUF file or the Q4_K_M one);
``ORG/REPO:FILE.gguf`` names the file. The pulled model is called by the name it was
pulled as, in canonical form (``hf.co/org/repo:q4_k_m``).

Everything goes through ``huggingface_hub``: the tree listing (``HfApi.list_repo_tree``)
gives each file's LFS sha256, the HEAD request (``get_hf_file_metadata``) gives its final
URL and size, and ``http_get`` downloads it, resuming with a Range request when the
connection drops. The bytes go to ``models/blobs/sha256-<hex>.partial``, which a later
pull resumes after a failure or restart, and become the blob only once their sha256
matches the hub's. Progress comes from the ``tqdm_class`` hook, which also lets a
cancelled pull stop its download thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollm.errors import (
    DigestMismatchError,
    InvalidModelNameError,
    ModelNotFoundError,
    PullError,
)
from ollm.model_names import parse_model_name
from ollm.services.models.digests import sha256_file
from ollm.services.models.gguf_info import GGUFFormatError, read_gguf_info
from ollm.services.models.registry import Registry
from ollm.services.models.store import is_sha256_hex

log = logging.getLogger(__name__)

HUB_HOSTS = ("hf.co", "huggingface.co")
DEFAULT_QUANT = "Q4_K_M"  # what Ollama picks when a repository has several
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class HubReference:
    """What to pull: a repository, optionally a quantization or a file, and the local name."""

    repo_id: str  # "ORG/REPO" as written (the hub is case-sensitive in places)
    selector: str | None  # "Q4_K_M", "file.gguf", or None
    local_name: str  # canonical name the model gets here

    @property
    def names_file(self) -> bool:
        return self.selector is not None and self.selector.lower().endswith(".gguf")


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file in the repository listing."""

    path: str
    size: int
    sha256: str | None  # from its LFS pointer


@dataclass(frozen=True, slots=True)
class PullPlan:
    """A resolved pull: which file, where from, and what it must hash to."""

    reference: HubReference
    file: RemoteFile
    sha256: str
    size: int
    url: str
    commit: str | None

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def source(self) -> str:
        commit = f"@{self.commit}" if self.commit else ""
        return f"hf.co/{self.reference.repo_id}/{self.file.path}{commit}"


class PullCancelled(Exception):
    """The consumer stopped listening; the download thread stops at its next chunk."""


def parse_hub_reference(text: str) -> HubReference:
    """Validate a pull name; 400 :class:`InvalidModelNameError` for anything else."""
    parsed = parse_model_name(text)
    if parsed.host is not None and parsed.host not in HUB_HOSTS:
        raise InvalidModelNameError(
            f"cannot pull from {parsed.host!r}: ollm pulls from Hugging Face "
            "(hf.co/ORG/REPO[:QUANT] or ORG/REPO:FILE.gguf)",
            param="model",
        )
    if parsed.namespace is None:
        raise InvalidModelNameError(
            f"cannot pull {text!r}: name a Hugging Face repository, "
            "hf.co/ORG/REPO[:QUANT] or ORG/REPO:FILE.gguf",
            param="model",
        )
    repository, _, tag = text.strip().partition(":")
    repo_id = "/".join(repository.split("/")[-2:])
    host = "hf.co/" if parsed.host is not None else ""
    local = f"{host}{parsed.namespace}/{parsed.name}:{parsed.tag}"
    return HubReference(repo_id, tag or None, local)


def _quant_tokens(path: str) -> set[str]:
    stem = path.rsplit("/", 1)[-1][: -len(".gguf")]
    return {token.upper() for token in re.split(r"[-.]", stem) if token}


def choose_file(files: Iterable[RemoteFile], reference: HubReference) -> RemoteFile:
    """The GGUF file ``reference`` asks for; 404 with the choices if there is none."""
    ggufs = [
        f
        for f in files
        if f.path.lower().endswith(".gguf") and "mmproj" not in f.path.rsplit("/", 1)[-1].lower()
    ]
    if reference.names_file:
        wanted = reference.selector or ""
        exact = [f for f in ggufs if f.path == wanted] or [
            f for f in ggufs if f.path.lower() == wanted.lower()
        ]
        matches = exact
    elif reference.selector is not None:
        matches = [f for f in ggufs if reference.selector.upper() in _quant_tokens(f.path)]
    elif len(ggufs) == 1:
        matches = ggufs
    else:
        matches = [f for f in ggufs if DEFAULT_QUANT in _quant_tokens(f.path)]
    singles = [f for f in matches if not _SPLIT.search(f.path)]
    if not singles and matches:
        raise PullError(f"{reference.repo_id}: split GGUF files are not supported yet")
    if not singles:
        raise ModelNotFoundError(_no_match_message(reference, ggufs), param="model")
    if len(singles) > 1:
        singles.sort(key=lambda f: (f.path.count("/"), len(f.path)))
        if singles[0].path.count("/") == singles[1].path.count("/"):
            choices = ", ".join(f.path for f in singles[:8])
            raise InvalidModelNameError(
                f"{reference.repo_id}: several files match ({choices}); name one as "
                f"{reference.repo_id}:FILE.gguf",
                param="model",
            )
    return singles[0]


def _no_match_message(reference: HubReference, ggufs: list[RemoteFile]) -> str:
    if not ggufs:
        return f"{reference.repo_id} has no GGUF files"
    quants = sorted(
        {t for f in ggufs for t in _quant_tokens(f.path) if re.match(r"I?Q\d|F16|BF16|F32", t)}
    )
    wanted = reference.selector or "a single GGUF file"
    listed = ", ".join(quants) if quants else ", ".join(f.path for f in ggufs[:8])
    return f"{reference.repo_id} has no {wanted}; available: {listed}"


def _bar_class(report: Callable[[int], None], cancel: threading.Event) -> type:
    """A tqdm stand-in for ``http_get``: reports bytes done, stops when cancelled."""

    class ProgressBar:
        def __init__(self, *_args: Any, total: int | None = None, initial: int = 0, **_kw: Any):
            self.total = total
            self.n = initial

        def update(self, count: int = 1) -> None:
            if cancel.is_set():
                raise PullCancelled
            self.n += count
            report(self.n)

        def close(self) -> None:
            pass

        def __enter__(self) -> ProgressBar:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return ProgressBar


class Puller:
    """Runs pulls into a registry's store. One download per blob at a time."""

    def __init__(self, registry: Registry, *, endpoint: str | None) -> None:
        self.registry = registry
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._locks: dict[str, asyncio.Lock] = {}
        self._cancels: set[threading.Event] = set()

    # -- resolving -----------------------------------------------------------------------

    async def prepare(self, name: str) -> PullPlan:
        """Validate ``name``, list the repository, choose the file and ask for its URL."""
        reference = parse_hub_reference(name)
        return await asyncio.to_thread(self._prepare, reference)

    def _prepare(self, reference: HubReference) -> PullPlan:
        from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
        from huggingface_hub.hf_api import RepoFile

        with _hub_errors(reference):
            api = HfApi(endpoint=self.endpoint, library_name="ollm")
            listing = api.list_repo_tree(reference.repo_id, recursive=True)
            files = [
                RemoteFile(item.path, item.size, item.lfs.sha256 if item.lfs else None)
                for item in listing
                if isinstance(item, RepoFile)
            ]
            chosen = choose_file(files, reference)
            if not is_sha256_hex(chosen.sha256):
                raise PullError(
                    f"{reference.repo_id}/{chosen.path} has no LFS sha256 to verify it against"
                )
            url = hf_hub_url(reference.repo_id, chosen.path, endpoint=self.endpoint)
            meta = get_hf_file_metadata(url, endpoint=self.endpoint)
        size = meta.size if meta.size is not None else chosen.size
        if meta.etag and meta.etag != chosen.sha256:
            log.warning("%s: listing and HEAD disagree on the file's digest", chosen.path)
        assert chosen.sha256 is not None
        return PullPlan(reference, chosen, chosen.sha256, size, meta.location, meta.commit_hash)

    # -- downloading ---------------------------------------------------------------------

    async def run(self, plan: PullPlan) -> AsyncIterator[Event]:
        """Progress events of ``plan`` until ``success``; raises on failure."""
        yield {"status": "pulling manifest"}
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        cancel = threading.Event()

        def emit(event: Event) -> None:  # from any thread
            loop.call_soon_threadsafe(queue.put_nowait, event)

        task = asyncio.ensure_future(self._fetch(plan, emit, cancel))
        task.add_done_callback(lambda _t: queue.put_nowait(None))
        task.add_done_callback(_retrieve)
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task
        finally:
            if not task.done():
                cancel.set()  # the consumer left: stop the download thread

    async def _fetch(
        self, plan: PullPlan, emit: Callable[[Event], None], cancel: threading.Event
    ) -> None:
        store = self.registry.store
        blob = store.blob_path(plan.sha256)
        lock = self._locks.setdefault(plan.sha256, asyncio.Lock())
        async with lock:
            if blob.is_file() and blob.stat().st_size == plan.size:
                emit(self._progress(plan, plan.size))
            else:
                self._cancels.add(cancel)
                try:
                    await asyncio.to_thread(self._download, plan, emit, cancel)
                finally:
                    self._cancels.discard(cancel)
                emit({"status": "verifying sha256 digest"})
                await asyncio.to_thread(self._verify_and_store, plan, blob)
            emit({"status": "writing manifest"})
            await asyncio.to_thread(
                self.registry.add,
                plan.reference.local_name,
                blob,
                digest=plan.sha256,
                source=plan.source,
            )
            emit({"status": "success"})

    @staticmethod
    def _progress(plan: PullPlan, completed: int) -> Event:
        return {
            "status": f"downloading {plan.digest}",
            "digest": plan.digest,
            "total": plan.size,
            "completed": completed,
        }

    def _download(
        self, plan: PullPlan, emit: Callable[[Event], None], cancel: threading.Event
    ) -> None:
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        partial = self.registry.store.partial_path(plan.sha256)
        partial.parent.mkdir(parents=True, exist_ok=True)
        done = partial.stat().st_size if partial.exists() else 0
        if done > plan.size:
            partial.unlink()
            done = 0
        if done:
            log.info("resuming %s at %d of %d bytes", plan.file.path, done, plan.size)
        emit(self._progress(plan, done))
        bar = _bar_class(lambda n: emit(self._progress(plan, n)), cancel)
        with _hub_errors(plan.reference), partial.open("ab") as file:
            http_get(
                plan.url,
                file,
                resume_size=done,
                headers=build_hf_headers(library_name="ollm"),
                expected_size=plan.size,
                displayed_filename=plan.file.path,
                tqdm_class=bar,
            )
        if done == plan.size:
            emit(self._progress(plan, plan.size))

    def _verify_and_store(self, plan: PullPlan, blob: Path) -> None:
        partial = self.registry.store.partial_path(plan.sha256)
        actual = sha256_file(partial)
        if actual != plan.sha256:
            partial.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"{plan.file.path}: downloaded sha256 {actual} does not match the hub's "
                f"{plan.sha256}; the download was discarded",
                expected=plan.sha256,
                actual=actual,
            )
        try:
            read_gguf_info(partial)
        except (GGUFFormatError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise PullError(f"{plan.file.path} is not a usable GGUF file: {exc}") from exc
        os.replace(partial, blob)
        self.registry.digests.remember(blob, plan.sha256)

    def cancel_all(self) -> None:
        """Stop every download thread at its next chunk (server shutdown)."""
        for cancel in list(self._cancels):
            cancel.set()


def _retrieve(task: asyncio.Future[None]) -> None:
    # Failures reach the consumer through ``await task``; one who left must not leave a
    # "Task exception was never retrieved" behind.
    exc = None if task.cancelled() else task.exception()
    if exc is not None and not isinstance(exc, PullCancelled):
        log.debug("pull ended with %s: %s", type(exc).__name__, exc)


@contextmanager
def _hub_errors(reference: HubReference) -> Iterator[None]:
    """Translate huggingface_hub and network failures into ollm's error tree."""
    from huggingface_hub import errors as hub

    repo = reference.repo_id
    try:
        yield
    except (PullCancelled, PullError, ModelNotFoundError, InvalidModelNameError):
        raise
    except hub.GatedRepoError as exc:  # before its parent, RepositoryNotFoundError
        raise PullError(f"{repo} is gated: accept its terms and set HF_TOKEN") from exc
    except (hub.RepositoryNotFoundError, hub.RevisionNotFoundError) as exc:
        raise ModelNotFoundError(f"'{repo}' was not found on the hub", param="model") from exc
    except hub.EntryNotFoundError as exc:
        raise ModelNotFoundError(f"{repo}: file not found on the hub", param="model") from exc
    except hub.OfflineModeIsEnabled as exc:
        raise PullError("cannot pull: HF_HUB_OFFLINE is set") from exc
    except Exception as exc:  # HTTP errors, connection failures, disk errors
        raise PullError(f"pulling {repo} failed: {exc}") from exc
