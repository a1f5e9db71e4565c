"""The on-disk format of one KV snapshot: a sequence's llama.cpp state and the tokens it holds.

Layout (all integers little-endian)::

    b"OLLMKV01"                    magic and format version
    u32 header length, header      UTF-8 JSON: version, model, runtime, owner, tag, counts
    u32 * n_tokens                 the exact token prefix whose KV the payload holds
    payload                        llama_state_seq_get_data() bytes
    32 bytes                       SHA-256 of everything above

Nothing in a snapshot is trusted until the checksum matches and the header names the same
model, runtime (llama.cpp version) and owner as the reader expects; see
:class:`ollm.engine.snapshot_store.SnapshotStore`.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"OLLMKV01"
FORMAT_VERSION = 1
_U32 = struct.Struct("<I")
_DIGEST_BYTES = 32
# A header is a few hundred bytes; anything larger is not one of ours.
_MAX_HEADER_BYTES = 64 * 1024


class SnapshotFormatError(ValueError):
    """The bytes are not a valid snapshot (truncated, corrupted, another format)."""


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What a snapshot says about itself; ``owner`` is a hash, never the raw key."""

    model: str
    runtime: str
    owner: str
    tag: str | None
    tokens: tuple[int, ...]
    payload_bytes: int
    version: int = FORMAT_VERSION

    def _json(self) -> bytes:
        fields = {
            "version": self.version,
            "model": self.model,
            "runtime": self.runtime,
            "owner": self.owner,
            "tag": self.tag,
            "n_tokens": len(self.tokens),
            "payload_bytes": self.payload_bytes,
        }
        return json.dumps(fields, sort_keys=True).encode()


def encode(header: SnapshotHeader, payload: bytes) -> bytes:
    """The whole file for ``header`` and ``payload``."""
    if header.payload_bytes != len(payload):
        raise ValueError("payload length does not match the header")
    meta = header._json()
    body = b"".join(
        (
            MAGIC,
            _U32.pack(len(meta)),
            meta,
            struct.pack(f"<{len(header.tokens)}I", *header.tokens),
            payload,
        )
    )
    return body + hashlib.sha256(body).digest()


def read_header(stream: BinaryIO) -> SnapshotHeader:
    """Parse the header and tokens from the start of a file (the payload is not read,
    so the checksum is not checked: use this to index, :func:`decode` to load)."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise SnapshotFormatError("not an ollm KV snapshot (or another format version)")
    (meta_len,) = _U32.unpack(_read_exactly(stream, _U32.size))
    if meta_len > _MAX_HEADER_BYTES:
        raise SnapshotFormatError("header too large")
    try:
        meta = json.loads(_read_exactly(stream, meta_len))
        n_tokens = int(meta["n_tokens"])
        header = SnapshotHeader(
            model=str(meta["model"]),
            runtime=str(meta["runtime"]),
            owner=str(meta["owner"]),
            tag=None if meta.get("tag") is None else str(meta["tag"]),
            tokens=(),
            payload_bytes=int(meta["payload_bytes"]),
            version=int(meta["version"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotFormatError(f"unreadable header: {exc}") from exc
    if header.version != FORMAT_VERSION or n_tokens < 0 or header.payload_bytes < 0:
        raise SnapshotFormatError("unsupported header")
    tokens = struct.unpack(f"<{n_tokens}I", _read_exactly(stream, 4 * n_tokens))
    return SnapshotHeader(
        header.model,
        header.runtime,
        header.owner,
        header.tag,
        tokens,
        header.payload_bytes,
        header.version,
    )


def decode(data: bytes) -> tuple[SnapshotHeader, bytes]:
    """Verify the checksum of a whole file and split it into header and payload."""
    if len(data) < len(MAGIC) + _U32.size + _DIGEST_BYTES:
        raise SnapshotFormatError("truncated snapshot")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotFormatError("checksum mismatch")
    stream = io.BytesIO(body)
    header = read_header(stream)
    payload = body[stream.tell() :]
    if len(payload) != header.payload_bytes:
        raise SnapshotFormatError("payload length does not match the header")
    return header, payload


def read_file_header(path: Path) -> SnapshotHeader:
    """:func:`read_header` of the file at ``path``."""
    with path.open("rb") as stream:
        return read_header(stream)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise SnapshotFormatError("truncated snapshot")
    return data
