"""How many of a model's layers fit on the GPUs, and what stays in host memory.

Ollama's behaviour: offload every layer that fits in the devices' free memory after the KV
cache and the compute buffers, run the rest on the CPU. The arithmetic follows what
llama.cpp does with ``n_gpu_layers = k``: the *last* k transformer blocks go to the
devices (the output head too when k exceeds the block count), each block's KV cache lives
with its block, the token embeddings stay in host memory, and with several devices
``tensor_split`` gives each device a consecutive run of the offloaded blocks in device
order. Pure arithmetic, no device calls: :mod:`ollm.placement.gpus` says what is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIB = 1 << 20
# Kept free on every device for the CUDA context, cuBLAS workspaces and fragmentation
# (Ollama reserves 457 MiB on CUDA for the same reason).
DEFAULT_DEVICE_OVERHEAD = 512 * MIB


@dataclass(frozen=True, slots=True)
class LayerSizes:
    """A model's memory, in the pieces placement moves around.

    ``blocks``: weight bytes of each transformer block, in order; ``kv_per_cell``: f16 KV
    bytes one context cell takes in each block; ``output``: the output head (which llama.cpp
    offloads last); ``host_only``: what never leaves host memory (token embeddings).
    """

    blocks: tuple[int, ...]
    kv_per_cell: tuple[int, ...]
    output: int
    host_only: int

    @property
    def layers(self) -> int:
        """Transformer blocks; ``layers + 1`` offloads the output head too."""
        return len(self.blocks)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a model's memory goes: ``gpu_layers`` for llama.cpp, the blocks each device
    holds (its ``tensor_split`` when there are several), and the bytes per device and in
    host memory."""

    gpu_layers: int
    per_device_layers: tuple[int, ...]
    device_bytes: tuple[int, ...]
    host_bytes: int

    @property
    def tensor_split(self) -> tuple[float, ...] | None:
        """llama.cpp's ``tensor_split`` (proportions per device), None with one device."""
        if len(self.per_device_layers) < 2 or not any(self.per_device_layers):
            return None
        return tuple(float(n) for n in self.per_device_layers)

    @property
    def total_device_bytes(self) -> int:
        return sum(self.device_bytes)


def compute_buffer_bytes(
    *, vocab: int, embedding: int, heads: int, cells: int, batch: int, flash_attention: bool
) -> int:
    """An estimate of llama.cpp's compute buffer on the main device for one micro-batch
    of ``batch`` tokens: the logits and a few activations of the batch, plus, without flash
    attention, the attention scores of the batch against the whole cache."""
    activations = 4 * batch * (vocab + 4 * embedding)
    scores = 0 if flash_attention else 4 * batch * cells * max(heads, 1)
    return activations + scores


def place_layers(
    sizes: LayerSizes,
    *,
    cells: int,
    kv_scale: float = 1.0,
    free: Sequence[int],
    compute: int,
    overhead: int = DEFAULT_DEVICE_OVERHEAD,
    requested: int | None = None,
    split: Sequence[float] | None = None,
    main: int = 0,
) -> Placement:
    """Place a model with a KV cache of ``cells`` cells (``kv_scale``: its type's bytes
    relative to f16) on devices with ``free`` bytes each.

    ``requested`` (Ollama's ``num_gpu``; None or negative: automatic) fixes the layer count
    instead of fitting it, ``split`` the proportions per device. The ``main`` device also
    holds the compute buffer. With no devices everything is in host memory.
    """
    n = sizes.layers
    if not free:
        return _assign(sizes, cells, kv_scale, 0, (), compute, main)
    main = min(main, len(free) - 1)
    if requested is not None and requested >= 0:
        layers = min(requested, n + 1)
        counts = _split_counts(min(layers, n), split or [max(f, 1) for f in free])
        return _assign(sizes, cells, kv_scale, layers, counts, compute, main)
    room = [max(0, f - overhead) for f in free]
    room[main] = max(0, room[main] - compute)
    for layers in range(n + 1, 0, -1):
        counts = (
            _split_counts(min(layers, n), split)
            if split
            else _fill(sizes, cells, kv_scale, min(layers, n), room)
        )
        if counts is None:
            continue
        placement = _assign(sizes, cells, kv_scale, layers, counts, compute, main)
        used = [b - (compute if i == main else 0) for i, b in enumerate(placement.device_bytes)]
        if all(u <= r for u, r in zip(used, room, strict=True)):
            return placement
    return _assign(sizes, cells, kv_scale, 0, tuple(0 for _ in free), compute, main)


def _block_bytes(sizes: LayerSizes, index: int, cells: int, kv_scale: float) -> int:
    return sizes.blocks[index] + int(sizes.kv_per_cell[index] * cells * kv_scale)


def _fill(
    sizes: LayerSizes, cells: int, kv_scale: float, blocks: int, room: Sequence[int]
) -> tuple[int, ...] | None:
    """Blocks per device when the last ``blocks`` blocks go to the devices in order, each
    filled to its room before the next (how ``tensor_split`` lays them out); None when
    they do not all fit."""
    counts = [0] * len(room)
    device, left = 0, room[0]
    for index in range(sizes.layers - blocks, sizes.layers):
        need = _block_bytes(sizes, index, cells, kv_scale)
        while need > left:
            device += 1
            if device == len(room):
                return None
            left = room[device]
        counts[device] += 1
        left -= need
    return tuple(counts)


def _split_counts(blocks: int, split: Sequence[float]) -> tuple[int, ...]:
    """``blocks`` shared out by ``split``'s proportions, as llama.cpp rounds them (each
    device gets the blocks whose cumulative share falls in its part)."""
    total = sum(split)
    bounds, acc = [], 0.0
    for share in split:
        acc += share / total if total > 0 else 0
        bounds.append(acc)
    counts = [0] * len(split)
    for i in range(blocks):
        position = i / blocks
        counts[next((d for d, b in enumerate(bounds) if position < b), len(split) - 1)] += 1
    return tuple(counts)


def _assign(
    sizes: LayerSizes,
    cells: int,
    kv_scale: float,
    layers: int,
    counts: Sequence[int],
    compute: int,
    main: int,
) -> Placement:
    """The bytes each side holds when the last ``sum(counts)`` blocks are on the devices as
    ``counts`` says (and the output head too when ``layers`` exceeds the blocks)."""
    n = sizes.layers
    device = [0] * len(counts)
    index = n - sum(counts)
    for d, count in enumerate(counts):
        for _ in range(count):
            device[d] += _block_bytes(sizes, index, cells, kv_scale)
            index += 1
    host = sizes.host_only + sum(
        _block_bytes(sizes, i, cells, kv_scale) for i in range(n - sum(counts))
    )
    if device and layers > n:
        last = max((d for d, c in enumerate(counts) if c), default=0)
        device[last] += sizes.output
    else:
        host += sizes.output
    if device and layers > 0:
        device[main] += compute
    return Placement(
        gpu_layers=layers,
        per_device_layers=tuple(counts),
        device_bytes=tuple(device),
        host_bytes=host,
    )
