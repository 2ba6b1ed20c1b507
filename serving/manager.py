"""The model manager: which versions exist, which are served, and every state change.

Shaped like TF Serving's ServerCore with the AvailabilityPreservingPolicy: a poll lists the
numeric version folders under each model's base path, the version policy picks the aspired
ones, aspired versions are loaded first and only then are the others unloaded; a version
that fails to load never displaces one that serves. Requests read an immutable snapshot of
the loaded versions, so a swap never blocks or fails them.
"""

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_status_pb2

from tfsp.serving.config import ModelSettings
from tfsp.serving.errors import ServingError, invalid, not_found, status_code
from tfsp.serving.servable import LoadError, Servable
from tfsp.serving.simple_atoi import simple_atoi

log = logging.getLogger("serving")
State = get_model_status_pb2.ModelVersionStatus.State


class Runner(Protocol):
    """Runs a servable's session (directly or batched); see tfsp.serving.batching."""

    def submit_async(
        self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...]
    ) -> Awaitable[list[np.ndarray]]:
        """Schedule one Session::Run by tensor names from the running event loop; a future
        of the fetched values, in order."""

    def close(self) -> None:
        """Finish queued calls and release threads."""


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A version ready to serve."""

    servable: Servable
    runner: Runner


@dataclasses.dataclass
class VersionRecord:
    """What GetModelStatus reports for one version, plus retry bookkeeping."""

    version: int
    state: int = State.START
    error_code: int = 0  # a gRPC/TF status code number; 0 = OK
    error_message: str = ""
    attempts: int = 0
    last_attempt: float = 0.0
    fingerprint: tuple = ()


@dataclasses.dataclass
class _Model:
    settings: ModelSettings
    records: dict[int, VersionRecord] = dataclasses.field(default_factory=dict)
    loaded: dict[int, Loaded] = dataclasses.field(default_factory=dict)  # replaced, never mutated
    labels: dict[str, int] = dataclasses.field(default_factory=dict)
    active: bool = True
    last_scan_note: str = ""
    wait_note: str | None = None  # what the last "waiting for model" log line said


def _fingerprint(path: Path) -> tuple:
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            entries.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def _load_error_code(exc: BaseException) -> grpc.StatusCode:
    code = getattr(exc, "code", None)
    if isinstance(exc, LoadError) and code is not None:
        return status_code(code)
    text = str(exc)
    if "no saved_model.pb" in text:
        return grpc.StatusCode.NOT_FOUND
    if "is not a SavedModel protobuf" in text:
        return grpc.StatusCode.DATA_LOSS
    return grpc.StatusCode.UNKNOWN


class ModelManager:
    """Owns model lifecycles: config, version discovery, loads, unloads, labels, status."""

    def __init__(
        self,
        load: Callable[[str, int, str], Servable],
        make_runner: Callable[[Servable], Runner],
        *,
        allow_unavailable_labels: bool = False,
        max_load_retries: int = 5,
        retry_interval_seconds: float = 60.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self._load = load
        self._make_runner = make_runner
        self._allow_unavailable_labels = allow_unavailable_labels
        self._max_retries = max_load_retries
        self._retry_interval = retry_interval_seconds
        self._poll_seconds = poll_seconds  # --file_system_poll_wait_seconds; 0: never again
        self._models: dict[str, _Model] = {}
        self._lifecycle = threading.RLock()  # one config change or poll at a time
        self._interrupted = threading.Event()  # ends a wait for new models (shutting down)

    # ---- requests (hot path: no locks, snapshot reads) ----

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Loaded:
        """The loaded version a request asks for; NOT_FOUND if there is none."""
        model = self._models.get(name)
        if model is not None and not model.active:
            model = None
        if label is not None:
            # Labels are looked up first, in the config's label map, as ServerCore's
            # GetModelVersionForLabel does: a label of an unknown model is unrecognized too.
            # An empty label is a label too (the oneof is set): TF Serving refuses it alike.
            if model is None or label not in model.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        if model is None:
            wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {wanted}")
        loaded = model.loaded
        if version is None:
            if not loaded:
                raise not_found(f"Servable not found for request: Latest({name})")
            return loaded[max(loaded)]
        found = loaded.get(version)
        if found is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return found

    def status(self, name: str, version: int | None = None) -> list[VersionRecord]:
        """Version states, newest first, as GetModelStatus reports them.

        There is no label argument: TF Serving's GetModelStatus looks only at the spec's
        version, so a request naming a label gets every version (get_model_status_impl.cc).
        """
        model = self._models.get(name)
        records = dict(model.records) if model else {}
        if version is not None:
            if version not in records:
                raise not_found(f"Could not find version {version} of model {name}")
            return [dataclasses.replace(records[version])]
        if not records:
            raise not_found(f"Could not find any versions of model {name}")
        return [dataclasses.replace(records[v]) for v in sorted(records, reverse=True)]

    # ---- lifecycle ----

    def configure(self, settings: list[ModelSettings]) -> None:
        """Apply a model config as TF Serving's ServerCore::ReloadConfig does: check every
        version label against what serves now (FAILED_PRECONDITION, nothing changed), swap
        all labels, add, update or remove models, then wait for the new models.

        A new model is waited for until its latest aspired version has loaded or failed; a
        failure raises ServingError(UNKNOWN, "N model(s) did not become available: …"). A
        new model with no version yet is waited for as long as it takes, polling, as there.
        """
        with self._lifecycle:
            labels = self._checked_labels(settings)
            wanted = {s.name: s for s in settings}
            new = [n for n in wanted if n not in self._models or not self._models[n].active]
            for name, model in self._models.items():
                model.labels = labels.get(name, {})
                if name not in wanted and model.active:
                    log.info("model %s removed from the config; unloading it", name)
                    model.active = False
                    for version in sorted(model.loaded):
                        self._unload(model, version)
            for name, setting in wanted.items():
                model = self._models.get(name)
                if model is None:
                    self._models[name] = _Model(setting, labels=labels.get(name, {}))
                    log.info(
                        "model %s: base path %s, policy %s",
                        name,
                        setting.base_path,
                        setting.policy.describe(),
                    )
                else:
                    model.settings = setting
                    model.active = True
            self._await_new_models(new, self._poll_models())

    def poll(self) -> None:
        """One pass over every active model's base path."""
        with self._lifecycle:
            self._poll_models()

    def interrupt(self) -> None:
        """End a wait for new models (configure raises UNAVAILABLE), e.g. on SIGTERM: TF
        Serving's wait would only end with the process."""
        self._interrupted.set()

    def shutdown(self) -> None:
        """Unload everything (drains batch queues)."""
        with self._lifecycle:
            for model in self._models.values():
                for version in sorted(model.loaded):
                    self._unload(model, version)

    # ---- internals (called with the lifecycle lock held) ----

    def _checked_labels(self, settings: list[ModelSettings]) -> dict[str, dict[str, int]]:
        """Every model's new labels, each checked as UpdateModelVersionLabelMap checks it
        before any model changes: its version must be AVAILABLE now. The flag lets a new
        label (or one that keeps its version) point at a version not loaded yet."""
        checked: dict[str, dict[str, int]] = {}
        for setting in settings:
            model = self._models.get(setting.name)
            current = model.labels if model else {}
            loaded = model.loaded if model else {}
            for label, version in setting.labels:
                allowed = self._allow_unavailable_labels and current.get(label, version) == version
                if version not in loaded and not allowed:
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model "
                        f"{setting.name}, which is not currently available for inference",
                    )
            checked[setting.name] = dict(setting.labels)
            if model is None or checked[setting.name] != model.labels:
                log.info("model %s: version labels %s", setting.name, checked[setting.name] or "{}")
        return checked

    def _await_new_models(self, names: list[str], aspired: dict[str, set[int]] | None) -> None:
        """TF Serving's WaitUntilModelsAvailable: each new model's latest aspired version
        loads or fails; until one is aspired, keep polling (for ever, as there)."""
        while pending := [name for name in names if not (aspired or {}).get(name)]:
            for name in pending:
                model = self._models[name]
                if model.wait_note != model.last_scan_note:
                    model.wait_note = model.last_scan_note
                    log.warning(
                        "waiting for model %s to have a version to load (%s), as TF Serving "
                        "waits for a new model",
                        name,
                        model.last_scan_note or "nothing aspired",
                    )
            if self._interrupted.wait(self._poll_seconds if self._poll_seconds > 0 else 1.0):
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"stopped while waiting for model(s) {', '.join(pending)} to have a version",
                )
            if self._poll_seconds > 0:  # without polling, TF Serving never looks again
                aspired = self._poll_models()
        failed = []
        for name in names:
            latest = max(aspired[name])  # type: ignore[index]  # every name has versions here
            record = self._models[name].records[latest]
            if record.state != State.AVAILABLE:
                due = ""
                if record.error_code:  # the version's status, as absl::Status::ToString
                    code = status_code(record.error_code)
                    due = f" due to error: {code.name}: {record.error_message}"
                failed.append(f"{{{{name: {name} version: {latest}}}{due}}}, ")
        if failed:
            raise ServingError(
                grpc.StatusCode.UNKNOWN,
                f"{len(failed)} model(s) did not become available: {{{''.join(failed)}}}",
            )

    def _poll_models(self) -> dict[str, set[int]] | None:
        """One poll, as TF Serving's file-system source makes it: every active model's base
        path is listed first, and if any cannot be, the poll fails and no model changes
        (PollFileSystemForConfig). Otherwise each model moves toward the versions its
        policy aspires; those versions, by model.

        Every newly aspired version of every model shows START before any load begins, as
        TF Serving's manager takes them all in (ManageServable) and then loads one at a time.
        """
        listings = {}
        for name, model in list(self._models.items()):
            if model.active:
                listings[name] = self._scan(model)
                if listings[name] is None:
                    return None
        aspired = {
            name: self._models[name].settings.policy.select(sorted(found))
            for name, found in listings.items()
        }
        for name, versions in aspired.items():
            self._start(self._models[name], versions)
        return {
            name: self._sync(self._models[name], found, aspired[name])
            for name, found in listings.items()
        }

    @staticmethod
    def _start(model: _Model, aspired: set[int]) -> None:
        """A fresh START record for each aspired version not seen yet, or unloaded since
        (a new harness there); a failed version keeps its END until it is retried."""
        for version in aspired:
            record = model.records.get(version)
            if record is None or (
                record.state == State.END and not record.error_code and version not in model.loaded
            ):
                model.records[version] = VersionRecord(version)

    def _scan(self, model: _Model) -> dict[int, Path] | None:
        """The versions under the base path; None if it cannot be listed. Every child whose
        name is a version number counts, a file too (TF Serving parses every name its
        listing returns, and a file then fails to load as a version)."""
        base = Path(model.settings.base_path)
        found: dict[int, Path] | None = {}
        try:
            # Sorted, as TF Serving's listing (a std::set): which of two names for one
            # number ("007" and "7") loads depends on their order and on the policy.
            with os.scandir(base) as listing:
                names = sorted(entry.name for entry in listing)
        except OSError as exc:
            found, note = None, f"cannot read base path {base}: {exc.strerror or exc}"
        else:
            by_version: dict[int, list[str]] = {}
            for name in names:
                # IndexChildrenByVersion: absl::SimpleAtoi into an int64; any other name,
                # a number past int64 included, is not a version.
                version = simple_atoi(name, 64)
                if version is not None:
                    by_version.setdefault(version, []).append(name)
            for version, folder in model.settings.policy.folders(by_version).items():
                found[version] = base / folder
                if len(by_version[version]) > 1:
                    log.warning(
                        "model %s: duplicate version directories for version %d: %r is used, "
                        "%s ignored",
                        model.settings.name,
                        version,
                        folder,
                        ", ".join(repr(n) for n in by_version[version] if n != folder),
                    )
            note = "" if found else f"no versions found under base path {base}"
        if note and note != model.last_scan_note:
            log.warning("model %s: %s", model.settings.name, note)
        model.last_scan_note = note
        return found

    def _should_try(self, record: VersionRecord | None, path: Path) -> bool:
        if record is None or record.state != State.END or not record.error_code:
            return True
        fingerprint = _fingerprint(path)
        if fingerprint != record.fingerprint:
            record.attempts = 0  # the folder changed: a fresh start
            return True
        if record.attempts > self._max_retries:
            return False
        return time.monotonic() - record.last_attempt >= self._retry_interval

    def _sync(self, model: _Model, on_disk: dict[int, Path], aspired: set[int]) -> set[int]:
        """Load and unload toward `aspired` (the policy's pick among `on_disk`), one action
        at a time as TF Serving's AvailabilityPreservingPolicy picks them; the aspired set.

        Unload the lowest serving version that is not aspired when nothing is aspired, an
        aspired version serves, or more than one unaspired version serves; otherwise load
        the highest aspired version not tried yet. So a failed load never leaves the model
        with nothing, and a base path with no version folders unloads every version.
        """
        tried: set[int] = set()
        while True:
            unaspired = sorted(v for v in model.loaded if v not in aspired)
            aspired_serving = any(v in model.loaded for v in aspired)
            if unaspired and (not aspired or aspired_serving or len(unaspired) > 1):
                self._unload(model, unaspired[0])
                continue
            new = [
                v
                for v in aspired
                if v not in model.loaded
                and v not in tried
                and self._should_try(model.records.get(v), on_disk[v])
            ]
            if not new:
                return aspired
            tried.add(max(new))
            self._try_load(model, max(new), on_disk[max(new)])

    def _try_load(self, model: _Model, version: int, path: Path) -> None:
        name = model.settings.name
        record = model.records.setdefault(version, VersionRecord(version))
        record.error_code, record.error_message = 0, ""
        record.state = State.LOADING
        record.attempts += 1
        record.last_attempt = time.monotonic()
        record.fingerprint = _fingerprint(path)
        started = time.monotonic()
        servable = None
        try:
            servable = self._load(name, version, str(path))
            runner = self._make_runner(servable)
        except Exception as exc:
            if servable is not None:
                servable.close()  # its runner could not be made (batching, warmup)
            message = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
            message = " ".join(message.split())
            record.error_code = _load_error_code(exc).value[0]
            record.error_message = message
            record.state = State.END
            log.error("model %s version %d failed to load: %s", name, version, message)
            return
        model.loaded = {**model.loaded, version: Loaded(servable, runner)}
        record.state = State.AVAILABLE
        log.info(
            "model %s version %d loaded from %s in %.2fs",
            name,
            version,
            path,
            time.monotonic() - started,
        )

    def _unload(self, model: _Model, version: int) -> None:
        record = model.records.setdefault(version, VersionRecord(version))
        record.state = State.UNLOADING
        loaded = model.loaded[version]
        model.loaded = {v: item for v, item in model.loaded.items() if v != version}
        try:
            loaded.runner.close()
        finally:
            record.state = State.END
        log.info("model %s version %d unloaded", model.settings.name, version)


class Poller:
    """Calls `action` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, name: str, interval: float, action: Callable[[], None]) -> None:
        self._interval = interval
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> "Poller":
        """Start polling; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and wait for a pass in progress to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._action()
            except Exception:
                log.exception("%s failed; will try again", self._thread.name)
