"""Where a model runs: the GPUs this machine has (``gpus``), how many layers of a model fit
on them (``fit``), and how ``ollama ps`` words the split (``processor``)."""

from ollm.placement.processor import processor_split

__all__ = ["processor_split"]
