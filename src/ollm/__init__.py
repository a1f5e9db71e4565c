"""ollm: a self-hosted LLM server with continuous batching on llama.cpp."""

__version__ = "0.1.0"
