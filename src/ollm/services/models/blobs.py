"""Uploaded blobs (``/api/blobs/sha256:<hex>``): files a client sends before ``/api/create``.

A blob lands where a pulled file would (``models/blobs/sha256-<hex>``), so a model created
from it is recorded like a pull. The body is streamed to a file of its own (never held in
memory) and hashed on the way; it takes the blob's name only once its sha256 matches the
one in the address, so a half-sent or corrupted upload never looks like a blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from ollm.errors import InvalidRequestError, OllmError
from ollm.services.models.store import ModelStore

# Ollama names blobs "sha256:<hex>"; its files use "sha256-<hex>", accepted as well.
_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
# Bytes gathered before one write to disk (in a worker thread, off the event loop).
_WRITE_CHUNK = 1 << 20
GGUF_MAGIC = b"GGUF"


class BlobTooLargeError(OllmError):
    """The upload is larger than ``max_blob_size`` (413)."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class InsufficientStorageError(OllmError):
    """The upload announces more bytes than the disk has free (507)."""

    status_code = 507
    error_type = "server_error"
    code = "insufficient_storage"


class BlobDigestMismatchError(InvalidRequestError):
    """The bytes received do not hash to the digest in the address (400)."""

    code = "digest_mismatch"


def parse_digest(value: str) -> str:
    """The hex of ``sha256:<64 hex>``; 400 :class:`InvalidRequestError` otherwise."""
    match = _DIGEST.fullmatch(value.strip())
    if match is None:
        raise InvalidRequestError(
            f"invalid digest {value!r}: expected sha256:<64 lower-case hex digits>",
            param="digest",
        )
    return match.group(1)


class BlobStore:
    """Uploads verified by digest into the model store's blob directory."""

    def __init__(self, store: ModelStore, *, max_size: int) -> None:
        self.store = store
        self.max_size = max_size

    def path(self, sha256: str) -> Path:
        """Where the blob with this hex digest lives."""
        return self.store.blob_path(sha256)

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored (complete and verified)."""
        return self.path(sha256).is_file()

    def is_gguf(self, sha256: str) -> bool:
        """Whether the stored blob starts with GGUF's magic bytes."""
        with self.path(sha256).open("rb") as file:
            return file.read(len(GGUF_MAGIC)) == GGUF_MAGIC

    async def receive(
        self, sha256: str, chunks: AsyncIterator[bytes], *, declared: int | None = None
    ) -> None:
        """Write the body ``chunks`` as blob ``sha256``, verifying its digest.

        ``declared`` is the Content-Length, if any: too large is refused before a byte is
        read (413; 507 when the disk lacks room). Raises :class:`BlobTooLargeError` as soon
        as more than ``max_size`` bytes arrived, :class:`BlobDigestMismatchError` when the
        bytes hash to another digest; nothing is left behind either way.
        """
        self._check_room(declared)
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.upload-{uuid.uuid4().hex}")
        digest = hashlib.sha256()
        size = 0
        file = await asyncio.to_thread(partial.open, "wb")
        try:
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_size:
                    raise BlobTooLargeError(self._too_large_message())
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_CHUNK:
                    await asyncio.to_thread(_write, file, digest, b"".join(pending))
                    pending, pending_size = [], 0
            if pending:
                await asyncio.to_thread(_write, file, digest, b"".join(pending))
            await asyncio.to_thread(_close, file)
            if digest.hexdigest() != sha256:
                raise BlobDigestMismatchError(
                    f"the uploaded bytes have digest sha256:{digest.hexdigest()}, "
                    f"not sha256:{sha256}; nothing was stored",
                    param="digest",
                )
            os.replace(partial, target)
        finally:
            file.close()
            partial.unlink(missing_ok=True)

    def _check_room(self, declared: int | None) -> None:
        if declared is None:
            return
        if declared > self.max_size:
            raise BlobTooLargeError(self._too_large_message())
        self.store.blobs_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.store.blobs_dir).free
        if declared > free:
            raise InsufficientStorageError(
                f"the upload is {declared} bytes, more than the {free} bytes free on the "
                "models disk"
            )

    def _too_large_message(self) -> str:
        return (
            f"the blob is larger than the server's limit of {self.max_size} bytes (max_blob_size)"
        )


def _write(file: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    digest.update(data)  # hashlib releases the GIL for large buffers
    file.write(data)


def _close(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
