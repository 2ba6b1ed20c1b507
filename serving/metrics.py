"""Prometheus metrics, named as TF Serving exports them (':tensorflow:serving:...').

Request counts and latencies (microseconds, as TF Serving) per model, API, entrypoint and
status; the batch-size and padding distributions; load attempts; and each version's state,
read from the model manager at scrape time.
"""

import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import Metric
from tensorflow_serving.apis import get_model_status_pb2

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS_US = tuple(10 * 1.8**k for k in range(33))
_BATCH_BUCKETS = tuple(2**k for k in range(14))
_STATES = get_model_status_pb2.ModelVersionStatus.State


class _Counters:
    """Counters with exact TF Serving names (prometheus_client would append '_total')."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._docs: dict[str, str] = {}

    def declare(self, name: str, doc: str) -> None:
        self._docs[name] = doc

    @staticmethod
    def key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted(labels.items())))

    def inc(self, name: str, labels: dict[str, str]) -> None:
        self.inc_key(self.key(name, labels))

    def inc_key(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + 1.0

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            values = dict(self._values)
        for name, doc in self._docs.items():
            metric = Metric(name, doc, "counter")
            for (sample_name, labels), value in sorted(values.items()):
                if sample_name == name:
                    metric.add_sample(name, dict(labels), value)
            yield metric


class _States:
    """One gauge sample per model version: its current state."""

    def __init__(self, source: Callable[[], list[tuple[str, int, int]]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        metric = Metric(
            ":tensorflow:serving:model_version_state",
            "1 for each model version's current state (START, LOADING, AVAILABLE, UNLOADING, END)",
            "gauge",
        )
        for name, version, state in self._source():
            labels = {"model_name": name, "version": str(version), "state": _STATES.Name(state)}
            metric.add_sample(metric.name, labels, 1.0)
        yield metric


class Metrics:
    """Every metric the server exports, in one private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._counters = _Counters()
        self._counters.declare(
            ":tensorflow:serving:request_count",
            "Requests, by model, API, entrypoint (GRPC/REST) and status code",
        )
        self._counters.declare(
            ":tensorflow:serving:model_load_count", "Version load attempts, by model and status"
        )
        self.registry.register(self._counters)
        self._latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Request latency in microseconds, by model, API, entrypoint and status",
            ["model_name", "API", "entrypoint", "status"],
            buckets=_LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self._batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Rows per batch actually run (before padding)",
            ["model_name"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._padding = Histogram(
            ":tensorflow:serving:batching_session:padding_size",
            "Padding rows added to reach an allowed batch size",
            ["model_name"],
            buckets=(0,) + _BATCH_BUCKETS,
            registry=self.registry,
        )
        self._states_source: Callable[[], list[tuple[str, int, int]]] = list
        self._request_series: dict[tuple[str, str, str, str], tuple] = {}

    def watch_states(self, source: Callable[[], list[tuple[str, int, int]]]) -> None:
        """Report (model, version, state) triples from `source` at each scrape."""
        self._states_source = source
        self.registry.register(_States(lambda: self._states_source()))

    def observe_request(
        self, model: str, api: str, entrypoint: str, status: str, seconds: float
    ) -> None:
        """Count one finished request and record its latency."""
        # Every request lands here: the label lookups are done once per label set.
        series = self._request_series.get((model, api, entrypoint, status))
        if series is None:
            labels = {"model_name": model, "API": api, "entrypoint": entrypoint, "status": status}
            series = (
                self._counters.key(":tensorflow:serving:request_count", labels),
                self._latency.labels(**labels),
            )
            self._request_series[(model, api, entrypoint, status)] = series
        count_key, latency = series
        self._counters.inc_key(count_key)
        latency.observe(seconds * 1e6)

    def observe_batch(self, model: str, size: int, padding: int) -> None:
        """Record one batch run by the batcher."""
        self._batch_size.labels(model_name=model).observe(size)
        self._padding.labels(model_name=model).observe(padding)

    def observe_load(self, model: str, ok: bool) -> None:
        """Count one load attempt."""
        labels = {"model_name": model, "status": "OK" if ok else "ERROR"}
        self._counters.inc(":tensorflow:serving:model_load_count", labels)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)
