"""``Metrics``: every Prometheus series of one app, in a registry of its own.

Built by ``create_app`` (so several apps in one process never share series) and kept on
``app.state.metrics``. It listens to the model manager (:class:`ModelEvents`: loads,
unloads, each engine's deltas) and reads engine gauges at scrape time.

``/metrics`` is open, like ``/health`` and ``/ready``, even with ``--auth``: it carries
counts and model ids, never prompts or users. Protect it at a reverse proxy if that is
too much; a setting to require a key for it can come later.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ollm.engine.client import OutputObserver
from ollm.engine.loop import EngineStats
from ollm.observability.engine_collector import EngineCollector, EngineView
from ollm.observability.tokens import TokenObserver
from ollm.services.models.service import ModelService

CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The app's series. Implements :class:`ollm.services.models.service.ModelEvents`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "ollm_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "ollm_http_request_duration_seconds",
            "Seconds from request to the end of the response body (streams included).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        model = ["model"]
        self.prompt_tokens = Counter(
            "ollm_prompt_tokens",
            "Prompt tokens of requests that began replying.",
            model,
            registry=r,
        )
        self.generated_tokens = Counter(
            "ollm_generated_tokens", "Tokens generated (EOS excluded).", model, registry=r
        )
        self.ttft = Histogram(
            "ollm_time_to_first_token_seconds",
            "Seconds from a request's arrival at the engine to its first token.",
            model,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "ollm_inter_token_latency_seconds",
            "Seconds between consecutive tokens of one reply.",
            model,
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "ollm_requests_finished",
            "Generations finished, by reason (stop, length, abort, error).",
            ["model", "reason"],
            registry=r,
        )
        self.model_loads = Counter("ollm_model_loads", "Models loaded.", model, registry=r)
        self.model_unloads = Counter("ollm_model_unloads", "Models unloaded.", model, registry=r)
        self.model_load_seconds = Histogram(
            "ollm_model_load_seconds",
            "Seconds a model took to load.",
            model,
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.engines = EngineCollector()
        r.register(self.engines)

    def attach(self, models: ModelService) -> None:
        """Listen to ``models`` and read its loaded engines at scrape time."""
        models.events = self

        def views() -> Iterator[EngineView]:
            for loaded in models.loaded_models():
                yield EngineView(loaded.model_id, loaded.engine.stats)

        self.engines.source = views

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered (see :mod:`ollm.observability.http`)."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)

    # -- ModelEvents -------------------------------------------------------------------

    def engine_observer(self, model_id: str) -> OutputObserver:
        return TokenObserver(
            model_id,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
            ttft=self.ttft,
            itl=self.itl,
            finished=self.finished,
        )

    def model_loaded(self, model_id: str, seconds: float) -> None:
        self.model_loads.labels(model_id).inc()
        self.model_load_seconds.labels(model_id).observe(seconds)

    def model_unloaded(self, model_id: str, stats: EngineStats) -> None:
        self.model_unloads.labels(model_id).inc()
        self.engines.retire(model_id, stats)
