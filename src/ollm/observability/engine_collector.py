"""Engine gauges and distributions, read from each loaded model's ``EngineStats`` at scrape
time: nothing is updated on the engine's hot path for them.

Counters and histograms must not go backwards when a model unloads, so the final stats of
an unloaded engine are folded into a per-model total that later engines add to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ollm.engine.loop import Distribution, EngineStats

# name in EngineStats -> (metric name, help)
DISTRIBUTIONS = {
    "batch_sequences": ("ollm_batch_size", "Sequences in each engine step (forward pass)."),
    "batch_tokens": ("ollm_batch_tokens", "Tokens in each engine step (forward pass)."),
    "queue_wait": (
        "ollm_queue_wait_seconds",
        "Seconds a request waited from arrival to admission into a slot.",
    ),
}
GAUGES = {
    "waiting": ("ollm_queue_depth", "Requests waiting for a slot."),
    "running": ("ollm_running_sequences", "Sequences running (prefilling or decoding)."),
    "kv_cells_used": ("ollm_kv_cells_used", "KV cache cells holding running sequences' tokens."),
}
# Counters of where prompt KV came from (see ollm.engine.kv_cache).
COUNTERS = {
    "prefix_hits": ("ollm_prefix_cache_hits", "Requests that reused a cached prompt prefix."),
    "cached_prompt_tokens": (
        "ollm_prefix_cache_tokens",
        "Prompt tokens whose KV was reused (in memory or from disk) instead of computed.",
    ),
    "prefix_copies": (
        "ollm_prefix_cache_copies",
        "Prefixes copied from another sequence of the same owner (e.g. a shared system prompt).",
    ),
    "snapshot_saves": ("ollm_kv_snapshot_saves", "KV snapshots written to disk."),
    "snapshot_loads": ("ollm_kv_snapshot_loads", "KV snapshots loaded from disk."),
    "preemptions": (
        "ollm_kv_preemptions",
        "Sequences preempted because the KV pool was full (resumed later by recomputing).",
    ),
}


@dataclass(slots=True)
class _Totals:
    """One distribution summed over engines: bucket counts and the sum of values."""

    counts: list[int]
    total: float = 0.0

    def add(self, counts: Sequence[int], total: float) -> None:
        self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
        self.total += total


@dataclass(slots=True)
class _Retired:
    """What unloaded engines of one model left behind."""

    distributions: dict[str, _Totals] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


class _Families:
    """Fresh, empty metric families for one scrape."""

    def __init__(self) -> None:
        self.gauges = {
            name: GaugeMetricFamily(metric, doc, labels=["model"])
            for name, (metric, doc) in GAUGES.items()
        }
        self.counters = {
            name: CounterMetricFamily(metric, doc, labels=["model"])
            for name, (metric, doc) in COUNTERS.items()
        }
        self.distributions = {
            name: HistogramMetricFamily(metric, doc, labels=["model"])
            for name, (metric, doc) in DISTRIBUTIONS.items()
        }

    def all(self) -> list[Metric]:
        return [*self.gauges.values(), *self.counters.values(), *self.distributions.values()]


@dataclass(frozen=True, slots=True)
class EngineView:
    """A loaded model's id and its engine's live stats."""

    model_id: str
    stats: EngineStats


class EngineCollector(Collector):
    """A Prometheus collector over the engines of the loaded models."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[EngineView]] = lambda: ()
        self._retired: dict[str, _Retired] = {}

    def retire(self, model_id: str, stats: EngineStats) -> None:
        """Keep an unloaded engine's final counts, so its model's series never go back."""
        retired = self._retired.setdefault(model_id, _Retired())
        for name in DISTRIBUTIONS:
            dist: Distribution = getattr(stats, name)
            counts = list(dist.counts)
            totals = retired.distributions.setdefault(name, _Totals([0] * len(counts)))
            totals.add(counts, dist.total)
        for name in COUNTERS:
            retired.counters[name] = retired.counters.get(name, 0) + getattr(stats, name)

    def describe(self) -> Iterator[Metric]:
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        live = {view.model_id: view.stats for view in self.source()}
        for model_id, stats in live.items():
            for name, family in families.gauges.items():
                family.add_metric([model_id], getattr(stats, name))
        for model_id in sorted(set(live) | set(self._retired)):
            stats, retired = live.get(model_id), self._retired.get(model_id, _Retired())
            for name, family in families.counters.items():
                live_count = getattr(stats, name) if stats is not None else 0
                family.add_metric([model_id], retired.counters.get(name, 0) + live_count)
            for name, family in families.distributions.items():
                self._add_distribution(family, model_id, name, stats, retired)
        yield from families.all()

    @staticmethod
    def _add_distribution(
        family: HistogramMetricFamily,
        model_id: str,
        name: str,
        stats: EngineStats | None,
        retired: _Retired,
    ) -> None:
        """One model's histogram: its retired engines' counts plus the live engine's."""
        bounds = getattr(stats or EngineStats(), name).bounds
        old = retired.distributions.get(name)
        if stats is None and old is None:
            return
        totals = _Totals([0] * (len(bounds) + 1))
        if old is not None:
            totals.add(old.counts, old.total)
        if stats is not None:
            dist: Distribution = getattr(stats, name)
            totals.add(list(dist.counts), dist.total)
        cumulative, buckets = 0, []
        for bound, count in zip(
            [*(str(float(b)) for b in bounds), "+Inf"], totals.counts, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([model_id], buckets, totals.total)
