"""What a GGUF file says about itself: metadata and tensor shapes, read from its header.

``gguf.GGUFReader`` builds an object per array element and takes seconds on a model with
a 250 000-token vocabulary; this reader walks the same header with ``struct`` and skips
big arrays, so listing a dozen models stays instant. The value types, file types and
tensor types come from the ``gguf`` package's own enums. Everything reported here is
read from the file, never guessed from its name.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from ollm.placement.fit import LayerSizes

GGUF_MAGIC = b"GGUF"
SMALL_ARRAY = 64  # arrays longer than this (vocabularies, merges) are skipped, not kept
KV_BYTES_PER_VALUE = 2  # llama.cpp's KV cache defaults to f16

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}


class GGUFFormatError(ValueError):
    """The file is not a GGUF file this reader understands."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's name, shape and storage type."""

    name: str
    shape: tuple[int, ...]
    type: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def n_bytes(self) -> int:
        """Bytes of its data: whole blocks of its storage type (0 for an unknown type)."""
        try:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(self.type)]
        except (ValueError, KeyError):
            return 0
        return self.n_elements // block * size


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """The header of a GGUF file: key/value metadata (small values only) and tensors."""

    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...] = field(repr=False)
    skipped_arrays: dict[str, int] = field(default_factory=dict)  # key -> length

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def arch_value(self, suffix: str) -> Any:
        """``{architecture}.{suffix}``, e.g. ``arch_value("context_length")``."""
        return self.metadata.get(f"{self.architecture}.{suffix}")

    @property
    def parameter_count(self) -> int:
        """Elements in every tensor: the model's parameter count."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def quantization(self) -> str | None:
        """``general.file_type`` as llama.cpp names it (``Q4_K_M``), else the dominant
        storage type of the 2-D weight tensors."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            try:
                return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        types = Counter(t.type for t in self.tensors if len(t.shape) >= 2)
        if not types:
            return None
        dominant = types.most_common(1)[0][0]
        try:
            return GGMLQuantizationType(dominant).name
        except ValueError:
            return None

    def kv_bytes_per_cell(self) -> int | None:
        """Bytes of K and V cache one context cell takes over all layers (f16), if known."""
        per_layer = self.kv_bytes_per_cell_by_layer()
        return sum(per_layer) if per_layer is not None else None

    def kv_bytes_per_cell_by_layer(self) -> list[int] | None:
        """Bytes of K and V cache one context cell takes in each layer (f16), if known."""
        layers = self.arch_value("block_count")
        heads = self.arch_value("attention.head_count")
        heads_kv = self.arch_value("attention.head_count_kv")
        embedding = self.arch_value("embedding_length")
        if not isinstance(layers, int) or layers <= 0:
            return None
        per_layer_heads = _per_layer(heads_kv if heads_kv is not None else heads, layers)
        if per_layer_heads is None:
            return None
        head_count = _per_layer(heads, layers)
        default_dim = (
            embedding // max(head_count[0], 1)
            if isinstance(embedding, int) and head_count
            else None
        )
        key_dim = self.arch_value("attention.key_length") or default_dim
        value_dim = self.arch_value("attention.value_length") or default_dim
        if not isinstance(key_dim, int) or not isinstance(value_dim, int):
            return None
        return [n * (key_dim + value_dim) * KV_BYTES_PER_VALUE for n in per_layer_heads]

    def layer_sizes(self) -> LayerSizes | None:
        """The model's bytes in the pieces GPU placement moves (see
        :mod:`ollm.placement.fit`), from the tensors' shapes and types; None when the
        header lacks the block count or the KV shape."""
        kv = self.kv_bytes_per_cell_by_layer()
        if kv is None:
            return None
        blocks = [0] * len(kv)
        output = token_embd = other = 0
        for tensor in self.tensors:
            size = tensor.n_bytes
            name = tensor.name
            if name.startswith("blk."):
                index = name.split(".", 2)[1]
                if index.isdigit() and int(index) < len(blocks):
                    blocks[int(index)] += size
                    continue
            if name == "token_embd.weight":
                token_embd = size
            elif name.startswith("output"):
                output += size
            else:
                other += size
        # A model whose head is tied to its embeddings has no output tensor: llama.cpp
        # then loads the embeddings a second time as the head, on the head's device.
        if not any(t.name == "output.weight" for t in self.tensors):
            output += token_embd
        return LayerSizes(
            blocks=tuple(blocks), kv_per_cell=tuple(kv), output=output, host_only=token_embd + other
        )


def _per_layer(value: Any, layers: int) -> list[int] | None:
    if isinstance(value, int):
        return [value] * layers
    if isinstance(value, list) and len(value) == layers and all(isinstance(v, int) for v in value):
        return value
    return None


class _Cursor:
    """Reads little- or big-endian GGUF values from a buffer, checking every bound."""

    def __init__(self, buffer: Any, endian: str) -> None:
        self.buffer = buffer
        self.endian = endian
        self.offset = 0
        self.size = len(buffer)

    def take(self, count: int) -> int:
        start = self.offset
        if count < 0 or start + count > self.size:
            raise GGUFFormatError("truncated GGUF header")
        self.offset = start + count
        return start

    def scalar(self, fmt: str) -> Any:
        width = struct.calcsize(fmt)
        return struct.unpack_from(self.endian + fmt, self.buffer, self.take(width))[0]

    def string(self) -> str:
        length = self.scalar("Q")
        start = self.take(length)
        return bytes(self.buffer[start : start + length]).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.take(self.scalar("Q"))

    def value(self, kind: int, *, key: str, skipped: dict[str, int]) -> Any:
        vtype = _value_type(kind)
        if vtype is GGUFValueType.STRING:
            return self.string()
        if vtype is GGUFValueType.ARRAY:
            return self.array(key, skipped)
        return self.scalar(_SCALARS[vtype])

    def array(self, key: str, skipped: dict[str, int]) -> list[Any] | None:
        item_type = _value_type(self.scalar("I"))
        count = self.scalar("Q")
        if count <= SMALL_ARRAY:
            return [self.value(item_type, key=key, skipped=skipped) for _ in range(count)]
        skipped[key] = count
        if item_type is GGUFValueType.STRING:
            for _ in range(count):
                self.skip_string()
        elif item_type is GGUFValueType.ARRAY:
            for _ in range(count):
                self.array(key, {})
        else:
            self.take(count * struct.calcsize(_SCALARS[item_type]))
        return None


def _value_type(kind: int) -> GGUFValueType:
    try:
        return GGUFValueType(kind)
    except ValueError:
        raise GGUFFormatError(f"unknown GGUF value type {kind}") from None


def parse_header(buffer: Any) -> GGUFInfo:
    """Parse the GGUF header at the start of ``buffer`` (bytes or an mmap)."""
    if bytes(buffer[:4]) != GGUF_MAGIC:
        raise GGUFFormatError("not a GGUF file (bad magic)")
    version = struct.unpack_from("<I", buffer, 4)[0] if len(buffer) >= 8 else 0
    endian = "<" if version & 0xFFFF else ">"  # a big-endian file reads as a huge LE number
    cursor = _Cursor(buffer, endian)
    cursor.take(4)
    version = cursor.scalar("I")
    if version not in (2, 3):
        raise GGUFFormatError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = cursor.scalar("Q"), cursor.scalar("Q")
    metadata: dict[str, Any] = {}
    skipped: dict[str, int] = {}
    for _ in range(kv_count):
        key = cursor.string()
        value = cursor.value(cursor.scalar("I"), key=key, skipped=skipped)
        if value is not None:
            metadata[key] = value
    tensors = []
    for _ in range(tensor_count):
        name = cursor.string()
        n_dims = cursor.scalar("I")
        if n_dims > 8:
            raise GGUFFormatError(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(cursor.scalar("Q") for _ in range(n_dims))
        tensor_type = cursor.scalar("I")
        cursor.scalar("Q")  # data offset: not needed
        tensors.append(TensorInfo(name, shape, tensor_type))
    return GGUFInfo(version, metadata, tuple(tensors), skipped)


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read the header of the GGUF file at ``path`` (memory-mapped; the weights stay on disk)."""
    with path.open("rb") as file:
        if path.stat().st_size < 24:
            raise GGUFFormatError("not a GGUF file (too small)")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return parse_header(buffer)
