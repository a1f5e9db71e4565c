"""The Ollama-compatible API under ``/api``: schemas, serving layer, routes."""
