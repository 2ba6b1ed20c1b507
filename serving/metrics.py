"""Prometheus metrics, as TF Serving exports them.

Each family is declared as TF Serving (or the TensorFlow library it links) declares its
`monitoring::Counter` or `monitoring::Sampler`: the same internal name
(`/tensorflow/serving/request_count`), label names in the same order, the same bucket
limits. `render` writes the page as `util/prometheus_exporter.cc` does: the name with every
character outside `[a-zA-Z0-9_]` turned into `:`, one `# TYPE` line per family (no HELP),
families in the order of their internal names, points in the order of their label values,
integer counts, bucket limits and sums with six significant digits. Histograms bucket as
TensorFlow's `tsl::histogram::Histogram` does: a value equal to a limit goes into the next
bucket up.

Where each value is recorded mirrors TF Serving's call sites (named on each method).
"""

import bisect
import contextvars
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

# http_server.cc (ProcessPrometheusRequest) answers the page with this Content-Type.
CONTENT_TYPE = "text/plain"

# The (model name as the request spells it, API) a session run is made for, API one of
# "Predict", "Classify", "Regress": set by the gRPC and REST adapters and by warmup around
# the calls TF Serving's runtime_latency covers (predict_util.cc, classifier.cc,
# regressor.cc, which warmup calls too); None elsewhere (MultiInference), where TF Serving
# records no runtime latency.
RUNTIME_API: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "tfsp_runtime_api", default=None
)


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """`monitoring::Buckets::Exponential(scale, growth, count)`'s limits: each one the last
    times `growth` (repeated products, so the doubles are TensorFlow's)."""
    limits = []
    bound = scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


# util.cc and loader.cc: "Scale of 10, power of 1.8 with bucket count 33 (~20 minutes)", µs.
LATENCY_BUCKETS_US = exponential_buckets(10, 1.8, 33)
# util.cc: request_example_counts.
EXAMPLE_COUNT_BUCKETS = exponential_buckets(1, 2, 15)
_BATCH_BUCKETS = tuple(float(2**k) for k in range(14))


def prometheus_name(tf_name: str) -> str:
    """The exported name of a TensorFlow metric (prometheus_exporter.cc,
    GetPrometheusMetricName)."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


def six_digits(value: float) -> str:
    """A double as absl::StrCat writes it: six significant digits, %g style."""
    return format(value, ".6g")


def _label_value(value: str) -> str:
    # prometheus_exporter.cc (SanitizeLabelValue) escapes backslash and double quote only.
    return value.replace("\\", "\\\\").replace('"', '\\"')


class _Family:
    """One registered metric: its TF name, label names and cells by label values."""

    kind = ""

    def __init__(self, tf_name: str, labels: tuple[str, ...], *, lazy: bool = False) -> None:
        """`lazy`: registered by its first record (a function-local static in TF Serving),
        so not on the page before it."""
        self.tf_name = tf_name
        self.name = prometheus_name(tf_name)
        self.labels = labels
        self.lazy = lazy
        self._lock = threading.Lock()
        self._cells: dict[tuple[str, ...], Any] = {}

    def registered(self) -> bool:
        """Whether TensorFlow's registry would hold it now."""
        return not self.lazy or bool(self._cells)

    def _label_text(self, values: tuple[str, ...]) -> str:
        pairs = zip(self.labels, values, strict=True)
        return ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs)

    def points(self) -> list[tuple[tuple[str, ...], Any]]:
        """(label values, value) pairs in TensorFlow's order: a std::map on the values."""
        with self._lock:
            return sorted((key, self._copy(cell)) for key, cell in self._cells.items())

    @staticmethod
    def _copy(cell: Any) -> Any:
        return cell

    def first_int64(self) -> int:
        """The first point's int64 value (0 without points, and for a histogram)."""
        return 0

    def lines(self) -> Iterable[str]:
        """The exposition lines, as prometheus_exporter.cc writes them."""
        raise NotImplementedError


class Counter(_Family):
    """`monitoring::Counter<N>`: an int64 per label set."""

    kind = "counter"

    def increment(self, values: tuple[str, ...], by: int = 1) -> None:
        """Add `by` to the cell of `values` (label values in declaration order)."""
        with self._lock:
            self._cells[values] = self._cells.get(values, 0) + by

    def first_int64(self) -> int:
        points = self.points()
        return points[0][1] if points else 0

    def lines(self) -> Iterable[str]:
        # SerializeScalar: "NAME{labels} %d", braces even without labels.
        yield f"# TYPE {self.name} counter"
        for values, count in self.points():
            yield f"{self.name}{{{self._label_text(values)}}} {count}"


class _Histogram:
    __slots__ = ("buckets", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.sum = 0.0


class Sampler(_Family):
    """`monitoring::Sampler<N>`: a histogram per label set, over `limits` plus DBL_MAX
    (ExplicitBuckets appends it), each bucket [lower limit, upper limit)."""

    kind = "histogram"

    def __init__(
        self,
        tf_name: str,
        labels: tuple[str, ...],
        limits: tuple[float, ...],
        *,
        lazy: bool = False,
    ) -> None:
        super().__init__(tf_name, labels, lazy=lazy)
        self.limits = limits if limits[-1] == sys.float_info.max else (*limits, sys.float_info.max)

    def add(self, values: tuple[str, ...], sample: float) -> None:
        """Record one sample in the cell of `values`."""
        # tsl::histogram::Histogram::Add: upper_bound, so a value equal to a limit is counted
        # in the bucket above it; past the last limit, the last bucket.
        index = min(bisect.bisect_right(self.limits, sample), len(self.limits) - 1)
        with self._lock:
            cell = self._cells.get(values)
            if cell is None:
                cell = self._cells[values] = _Histogram(len(self.limits))
            cell.buckets[index] += 1
            cell.sum += sample

    @staticmethod
    def _copy(cell: _Histogram) -> tuple[list[int], float]:
        return list(cell.buckets), cell.sum

    def lines(self) -> Iterable[str]:
        # SerializeHistogram: cumulative buckets (the last one "+Inf"), then _sum, _count.
        yield f"# TYPE {self.name} histogram"
        for values, (buckets, total) in self.points():
            labels = self._label_text(values)
            prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
            cumulative = 0
            for index, count in enumerate(buckets):
                cumulative += count
                last = index == len(buckets) - 1
                limit = "+Inf" if last else six_digits(self.limits[index])
                yield f'{prefix}le="{limit}"}} {cumulative}'
            yield f"{self.name}_sum{{{labels}}} {six_digits(total)}"
            yield f"{self.name}_count{{{labels}}} {cumulative}"


def _micros(seconds: float) -> int:
    # TF Serving measures with Env::NowMicros: whole microseconds.
    return max(int(seconds * 1_000_000), 0)


class Metrics:
    """Every metric the server exports, recorded where TF Serving records it."""

    def __init__(self) -> None:
        # tensorflow/cc/saved_model/loader.cc (LoadSavedModel)
        self.load_attempt_count = Counter(
            "/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status")
        )
        self.load_latency = Counter("/tensorflow/cc/saved_model/load_latency", ("model_path",))
        self.load_latency_by_stage = Sampler(
            "/tensorflow/cc/saved_model/load_latency_by_stage",
            ("model_path", "stage"),
            LATENCY_BUCKETS_US,
        )
        # servables/tensorflow/util.cc
        self.request_count = Counter("/tensorflow/serving/request_count", ("model_name", "status"))
        self.request_latency = Sampler(
            "/tensorflow/serving/request_latency",
            ("model_name", "API", "entrypoint"),
            LATENCY_BUCKETS_US,
        )
        self.runtime_latency = Sampler(
            "/tensorflow/serving/runtime_latency",
            ("model_name", "API", "runtime"),
            LATENCY_BUCKETS_US,
        )
        self.example_counts = Sampler(
            "/tensorflow/serving/request_example_counts", ("model",), EXAMPLE_COUNT_BUCKETS
        )
        self.example_count_total = Counter(
            "/tensorflow/serving/request_example_count_total", ("model",)
        )
        # servables/tensorflow/saved_model_warmup_util.cc
        self.warmup_latency = Sampler(
            "/tensorflow/serving/model_warmup_latency", ("model_path", "status"), LATENCY_BUCKETS_US
        )
        self.warmup_records_read = Counter(
            "/tensorflow/serving/model_warmup_records_read", ("model_path", "status")
        )
        # batching/batching_session.cc: globals, on every page
        self.queuing_latency = Sampler(
            "/tensorflow/serving/batching_session/queuing_latency",
            ("thread_pool_name",),
            exponential_buckets(100, 1.2, 52),
        )
        self.wrapped_run_count = Counter(
            "/tensorflow/serving/batching_session/wrapped_run_count", ()
        )
        # batching/batching_util.h: function-local statics there, so each family is on the
        # page only once batching has recorded into it
        self.input_batch_size = Sampler(
            "/tensorflow/serving/batching_session/input_batch_size", (), _BATCH_BUCKETS, lazy=True
        )
        self.processed_batch_size = Sampler(
            "/tensorflow/serving/batching_session/processed_batch_size",
            (),
            _BATCH_BUCKETS,
            lazy=True,
        )
        self.padding_size = Sampler(
            "/tensorflow/serving/batching_session/padding_size",
            ("execution_batch_size",),
            _BATCH_BUCKETS,
            lazy=True,
        )
        families = [value for value in vars(self).values() if isinstance(value, _Family)]
        # CollectedMetrics::metric_descriptor_map is a std::map: pages list families in the
        # order of their TF names.
        self._families = {family.tf_name: family for family in families}

    # ---- requests (model_servers/prediction_service_impl.cc, http_server.cc) ----

    def count_request(self, model: str, status: str) -> None:
        """RecordModelRequestCount: one finished Predict, Classify or Regress over gRPC, or
        one REST /v1/ request; `model` as the client named it, `status` a code name."""
        self.request_count.increment((model, status))

    def observe_request_latency(
        self, model: str, api: str, entrypoint: str, seconds: float
    ) -> None:
        """RecordRequestLatency: a request that succeeded (TF Serving records no other)."""
        self.request_latency.add((model, api, entrypoint), _micros(seconds))

    def observe_runtime(self, model: str, api: str, seconds: float) -> None:
        """RecordRuntimeLatency: one successful session run of Predict, Classify or Regress
        (predict_util.cc, classifier.cc, regressor.cc; runtime "TF1")."""
        self.runtime_latency.add((model, api, "TF1"), _micros(seconds))

    def observe_examples(self, model: str, count: int) -> None:
        """RecordRequestExampleCount: the examples of a MultiInference whose run succeeded
        (multi_inference.cc)."""
        self.example_counts.add((model,), count)
        self.example_count_total.increment((model,), count)

    # ---- loads (tensorflow/cc/saved_model/loader.cc) ----

    def observe_load(
        self,
        model_path: str,
        ok: bool,
        seconds: float,
        stages: dict[str, float] | None = None,
    ) -> None:
        """One LoadSavedModel of the version folder `model_path`: its outcome, its time
        (added to load_latency whatever the outcome, as loader.cc does) and, for a load that
        got through its init op, the time of each stage ("restore_graph", "init_graph")."""
        self.load_attempt_count.increment((model_path, "success" if ok else "fail"))
        self.load_latency.increment((model_path,), _micros(seconds))
        for stage, stage_seconds in (stages or {}).items():
            self.load_latency_by_stage.add((model_path, stage), _micros(stage_seconds))

    # ---- warmup (servables/tensorflow/saved_model_warmup_util.cc) ----

    def observe_warmup(self, model_path: str, seconds: float, records: int) -> None:
        """A version folder's warmup that succeeded: its time and the records it read
        (TF Serving's single-threaded warmup returns before recording a failure)."""
        self.warmup_latency.add((model_path, "OK"), _micros(seconds))
        self.warmup_records_read.increment((model_path, "OK"), records)

    # ---- batching (batching_session.cc; tfsp.serving.batching.BatchObserver) ----

    def observe_batch_input(self, rows: int) -> None:
        """RecordInputBatchSize: one input tensor of a call entering the batcher."""
        self.input_batch_size.add((), rows)

    def observe_queuing(self, micros: int) -> None:
        """queuing_latency: a call's wait in its queue. TF Serving's model server makes its
        batching sessions with an empty thread_pool_name, the label's value."""
        self.queuing_latency.add(("",), micros)

    def observe_batch(self, padded: int, padding: int) -> None:
        """RecordProcessedBatchSize and RecordPaddingSize: a batch's size after padding, and
        its padding, labelled by that size."""
        self.processed_batch_size.add((), padded)
        self.padding_size.add((str(padded),), padding)

    def count_wrapped_run(self) -> None:
        """wrapped_run_count: one merged batch run on the session."""
        self.wrapped_run_count.increment(())

    # ---- reading ----

    def first_int64(self, tf_name: str) -> int:
        """The int64 value of the first point of the metric named `tf_name` (e.g.
        "/tensorflow/serving/request_count"); 0 if there is no such metric or point, as
        model_service_impl.cc (GetMetrics) reads it."""
        family = self._families.get(tf_name)
        return family.first_int64() if family is not None else 0

    def render(self) -> bytes:
        """The page prometheus_exporter.cc (GeneratePage) would write: lines joined by
        newlines, with one at the end."""
        families = [self._families[name] for name in sorted(self._families)]
        lines = [line for family in families if family.registered() for line in family.lines()]
        return ("\n".join(lines) + "\n").encode()


class TimedRunner:
    """A version's runner whose session runs record runtime_latency when made for one of the
    APIs TF Serving times (`RUNTIME_API`). The time covers the whole run as the API's caller
    sees it, queueing in a batch included, as TF Serving's BatchingSession::Run does."""

    def __init__(self, runner: Any, metrics: Metrics) -> None:
        self._runner = runner
        self._metrics = metrics

    async def submit_async(self, *args: Any, **kwargs: Any) -> list:
        """The wrapped runner's submit_async, timed; TF Serving records a successful run
        only (the record follows TF_RETURN_IF_ERROR)."""
        timed = RUNTIME_API.get()
        started = time.perf_counter()
        values = await self._runner.submit_async(*args, **kwargs)
        if timed is not None:
            self._metrics.observe_runtime(*timed, time.perf_counter() - started)
        return values

    def close(self) -> None:
        """Close the wrapped runner."""
        self._runner.close()
