"""How one model version becomes servable, in TF Serving's order (saved_model_bundle_factory.cc,
bundle_factory_util.cc, saved_model_warmup.cc):

1. the SavedModel loads on TF Serving's load path (tfsp.serving.servable), timed and counted
   into the load metrics around that load alone, as TensorFlow's LoadSavedModel does;
2. its batching parameters are picked (the server's, or with per-model parameters the
   version's own `batching_params.pbtxt`) and checked, and its runner is built: direct on the
   model workers, or through the shared batch scheduler;
3. its warmup requests replay through that runner, batching and its limits included.

A refusal at any step is a LoadError, so the version never becomes AVAILABLE and never
replaces a serving one. The model manager calls `load` and then `make_runner`.
"""

import dataclasses
import os
import time

import grpc

from tfsp.serving import config as config_mod
from tfsp.serving.batching import (
    BatchingConfigError,
    BatchingRunner,
    BatchObserver,
    BatchScheduler,
    DirectRunner,
    run_blocking,
)
from tfsp.serving.config import BatchingSettings, ConfigError
from tfsp.serving.manager import Runner
from tfsp.serving.metrics import Metrics, TimedRunner
from tfsp.serving.servable import LoadError, Servable, SessionOptions, load_servable
from tfsp.serving.warmup import WarmupError, run_warmup
from tfsp.serving.workers import ModelWorkers

# The code of a version whose batching parameters TF Serving's bundle factory refuses.
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """The server flags that decide how a version loads (defaults: tensorflow_model_server's)."""

    tags: tuple[str, ...] = ("serve",)
    session: SessionOptions = dataclasses.field(default_factory=SessionOptions)
    batching: BatchingSettings | None = None  # --enable_batching's parameters
    per_model_batching: bool = False  # --enable_per_model_batching_parameters
    warmup: bool = True  # --enable_model_warmup
    warmup_iterations: int = 1  # --num_request_iterations_for_warmup
    method_name_check: bool = False  # --enable_signature_method_name_check


class VersionLoader:
    """Loads versions and builds their runners for the ModelManager.

    The model workers and the batch scheduler are the server's, shared by every version;
    `metrics` (optional) records loads, warmups, runtime latency and batching;
    `batch_observer` overrides where batching is reported (default: `metrics`).
    """

    def __init__(
        self,
        options: LoadOptions,
        workers: ModelWorkers,
        scheduler: BatchScheduler | None = None,
        metrics: Metrics | None = None,
        batch_observer: BatchObserver | None = None,
    ) -> None:
        self._options = options
        self._workers = workers
        self._scheduler = scheduler
        self._metrics = metrics
        self._batch_observer = batch_observer if batch_observer is not None else metrics

    def load(self, name: str, version: int, path: str) -> Servable:
        """The version's SavedModel on TF Serving's load path (LoadError if it cannot load)."""
        started = time.perf_counter()
        try:
            servable = load_servable(name, version, path, self._options.tags, self._options.session)
        except Exception:
            if self._metrics is not None:
                self._metrics.observe_load(path, False, time.perf_counter() - started)
            raise
        if self._metrics is not None:
            seconds = time.perf_counter() - started
            self._metrics.observe_load(path, True, seconds, servable.load_stages)
        return servable

    def make_runner(self, servable: Servable) -> Runner:
        """The version's runner, warmed up (LoadError if its batching or warmup is refused)."""
        settings = self._batching_for(servable)
        if settings is None:
            runner: Runner = DirectRunner(servable, self._workers)
        else:
            try:
                runner = BatchingRunner(
                    servable, settings, self._workers, self._batch_observer, self._scheduler
                )
            except BatchingConfigError as exc:
                raise LoadError(
                    f"loading {servable.path} failed: {exc}", _INVALID_ARGUMENT
                ) from None
        if self._metrics is not None:
            runner = TimedRunner(runner, self._metrics)
        if self._options.warmup:
            self._warm_up(servable, runner)
        return runner

    def _batching_for(self, servable: Servable) -> BatchingSettings | None:
        """The version's batching parameters (None: unbatched), as TF Serving's bundle factory
        picks them: with per-model parameters, the version's own file, and none without one."""
        if self._options.batching is None or not self._options.per_model_batching:
            return self._options.batching
        own = os.path.join(servable.path, config_mod.PER_MODEL_BATCHING_FILE)
        if not os.path.exists(own):
            return None
        try:
            return config_mod.batching_parameters(own)
        except ConfigError as exc:
            raise LoadError(f"Invalid protobuf file: '{own}' ({exc})", _INVALID_ARGUMENT) from None

    def _warm_up(self, servable: Servable, runner: Runner) -> None:
        """Replay the warmup file through the runner the version will serve with (TF Serving
        warms the batching session up); a failed request fails the load."""
        started = time.perf_counter()
        try:
            records = run_warmup(
                servable,
                self._options.warmup_iterations,
                method_name_check=self._options.method_name_check,
                run_tensors=lambda feeds, fetches: run_blocking(runner, feeds, fetches),
            )
        except WarmupError as exc:
            runner.close()
            raise LoadError(
                f"warmup of {servable.path} failed: {exc}", code=exc.code.value[0]
            ) from exc
        if records is not None and self._metrics is not None:
            self._metrics.observe_warmup(servable.path, time.perf_counter() - started, records)
