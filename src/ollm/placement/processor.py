"""Where a loaded model runs, in the words ``ollama ps`` uses for its PROCESSOR column."""

from __future__ import annotations


def processor_split(size: int, on_gpu: int) -> str:
    """``100% GPU``, ``100% CPU`` or ``35%/65% CPU/GPU`` for a model of ``size`` bytes with
    ``on_gpu`` of them on the accelerator."""
    if size <= 0 or on_gpu <= 0:
        return "100% CPU"
    if on_gpu >= size:
        return "100% GPU"
    gpu = round(100 * on_gpu / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"
