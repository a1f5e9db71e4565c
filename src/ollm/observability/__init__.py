"""Observability: Prometheus metrics (one registry per app), readiness checks.

Nothing here is imported by the engine: the engine exposes plain counters and an output
observer hook, and :class:`Metrics` reads or listens to them.
"""

from ollm.observability.metrics import Metrics

__all__ = ["Metrics"]
