"""The inference engine: continuous batching, knowing nothing of HTTP, SQL or auth."""
