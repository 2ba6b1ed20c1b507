"""Pulling compressed features (the encoder's codes) from a model server: `tfsp features`.

Works against our server locally and TF Serving in the cluster: it calls GetModelMetadata
once, then gRPC Predict on the encoder's `predict_images` signature (input `images`
[n, 32, 32, 1] → output `codes` [n, k]), or on `predict_image_bytes` for a folder of image
files (encoded bytes, framed in the model). Requests are batched, several are in flight
at once, UNAVAILABLE, DEADLINE_EXCEEDED and a server out of gRPC threads are retried with
exponential backoff, rows keep their input order, and progress is checkpointed so an
interrupted pull resumes (serving/feature_store.py).
"""

import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from tfsp.core.errors import UserError
from tfsp.core.signatures import (
    CODES_KEY,
    IMAGE_BYTES_INPUT,
    IMAGES_INPUT,
    PREDICT_IMAGE_BYTES,
    PREDICT_IMAGES,
)
from tfsp.serving.options import THREADPOOL_EXHAUSTED

if TYPE_CHECKING:  # both import TensorFlow/gRPC; the CLI imports them only when pulling
    from tfsp.serving.client import ClientError, ServingClient
    from tfsp.serving.feature_sources import FeatureSource

T = TypeVar("T")


def encoder_call(batch: np.ndarray) -> tuple[str, str]:
    """(signature, input name) for a batch: encoded image files (a bytes array) go to
    `predict_image_bytes`, pixel arrays to `predict_images`."""
    if batch.dtype == object:
        return PREDICT_IMAGE_BYTES, IMAGE_BYTES_INPUT
    return PREDICT_IMAGES, IMAGES_INPUT


_RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


def _retryable(exc: "ClientError") -> bool:
    # A server whose gRPC threads are all busy refuses the call at once (TF Serving's
    # --grpc_max_threads); other RESOURCE_EXHAUSTED answers (a message too large) stay.
    busy = exc.code == "RESOURCE_EXHAUSTED" and exc.message == THREADPOOL_EXHAUSTED
    return exc.code in _RETRYABLE or busy


@dataclass
class PullResult:
    """What a pull did."""

    rows: int
    resumed_from: int
    seconds: float
    version: int
    code_size: int


def with_retries(call: Callable[[], T], retries: int, what: str) -> T:
    """`call()`, retrying UNAVAILABLE, DEADLINE_EXCEEDED and a server out of gRPC threads
    with exponential backoff.

    Other failures, and the last retryable one, become a one-line UserError.
    """
    from tfsp.serving.client import ClientError

    for attempt in range(retries + 1):
        try:
            return call()
        except ClientError as exc:
            retryable = _retryable(exc)
            if not retryable or attempt == retries:
                tries = f" after {attempt + 1} tries" if retryable else ""
                raise UserError(f"{what}: {exc.code}: {exc.message}{tries}") from None
            time.sleep(min(0.2 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


def describe_encoder(
    client: "ServingClient",
    model: str,
    version: int | None,
    retries: int,
    *,
    image_files: bool = False,
) -> tuple[int, int]:
    """(version, code size) of the served encoder; UserError if `model` is not an encoder
    (or, for `image_files`, has no signature that takes them)."""
    spec, signatures = with_retries(
        lambda: client.metadata(model, version=version),
        retries,
        f"model server at {client.address}",
    )
    signature = signatures.get(PREDICT_IMAGES)
    if signature is None or CODES_KEY not in signature.outputs:
        outputs = sorted(signature.outputs) if signature is not None else []
        raise UserError(
            f"model {model!r} is not an encoder: it needs a {PREDICT_IMAGES!r} signature "
            f"with a {CODES_KEY!r} output (found signatures {sorted(signatures)}, "
            f"outputs {outputs})"
        )
    image_dims = [d.size for d in signature.inputs[IMAGES_INPUT].tensor_shape.dim]
    if image_dims[1:] != [32, 32, 1]:
        raise UserError(
            f"model {model!r} takes images of shape {image_dims}; this tool sends [n, 32, 32, 1]"
        )
    if image_files and PREDICT_IMAGE_BYTES not in signatures:
        raise UserError(
            f"model {model!r} has no {PREDICT_IMAGE_BYTES!r} signature to frame image files "
            "(it was exported before 2026-12-05: run its pipeline again), or pass a .npy"
        )
    code_size = signature.outputs[CODES_KEY].tensor_shape.dim[-1].size
    return spec.version.value, code_size


@dataclass
class _EncoderCalls:
    """Predict calls to one encoder version, retried, with their answers checked."""

    client: "ServingClient"
    model: str
    version: int
    code_size: int
    retries: int

    def codes(self, images: np.ndarray) -> np.ndarray:
        """Codes of a batch (decoded images, or encoded files)."""
        signature, input_name = encoder_call(images)
        _, outputs = with_retries(
            lambda: self.client.predict(
                self.model,
                {input_name: images},
                signature=signature,
                version=self.version,
                output_filter=[CODES_KEY],
            ),
            self.retries,
            f"Predict on {self.model!r} version {self.version}",
        )
        codes = outputs[CODES_KEY]
        if codes.shape != (len(images), self.code_size):
            raise UserError(
                f"{self.model!r} returned codes of shape {list(codes.shape)} for "
                f"{len(images)} images; expected [{len(images)}, {self.code_size}]"
            )
        return codes

    def file_codes(self, files: np.ndarray, names: list[str]) -> np.ndarray:
        """Codes of a batch of image files; a file the model cannot read is named."""
        try:
            return self.codes(files)
        except UserError as exc:
            if "INVALID_ARGUMENT" not in str(exc):
                raise
            for row, name in enumerate(names):  # the batch's files one by one
                try:
                    self.codes(files[row : row + 1])
                except UserError as single:
                    raise UserError(f"image {name}: {single}") from None
            raise


@dataclass
class _Checkpoints:
    """Codes collected in input order and committed to the store every `part_rows` rows."""

    store: object  # a FeatureStore
    source: "FeatureSource"
    next_row: int
    part_rows: int
    buffered: list[np.ndarray] = field(default_factory=list)

    def add(self, codes: np.ndarray) -> None:
        """Take the next rows' codes; commit a part when it is full or the input is done."""
        self.buffered.append(codes)
        rows = sum(len(c) for c in self.buffered)
        if rows >= self.part_rows or self.next_row + rows == self.source.num_rows:
            ids = self.source.ids(self.next_row, self.next_row + rows)
            self.store.commit(ids, np.concatenate(self.buffered))
            self.buffered.clear()
            self.next_row += rows


def pull_features(
    source: "FeatureSource",
    output: Path,
    client: "ServingClient",
    model: str,
    *,
    version: int | None = None,
    batch_size: int = 256,
    in_flight: int = 4,
    part_rows: int = 8192,
    retries: int = 5,
    progress: bool = True,
) -> PullResult:
    """Pull codes for every row of `source` into `output`, resuming a matching checkpoint:
    `in_flight` requests of `batch_size` rows at once, answers taken in input order."""
    from tqdm import tqdm

    from tfsp.serving.feature_store import FeatureStore, check_output

    check_output(output)
    if source.num_rows == 0:
        raise UserError(f"input {source.description} has no rows")
    version, code_size = describe_encoder(
        client, model, version, retries, image_files=source.sends_image_files
    )
    identity = {"input": source.fingerprint, "rows": source.num_rows, "model": model}
    store = FeatureStore(output, {**identity, "version": version, "code_size": code_size})
    started, resumed_from = time.monotonic(), store.resume_or_start()
    encoder = _EncoderCalls(client, model, version, code_size, retries)
    checkpoints = _Checkpoints(store, source, resumed_from, part_rows)
    bar = tqdm(
        total=source.num_rows,
        initial=resumed_from,
        unit="rows",
        unit_scale=True,
        desc=f"features from {model} v{version}",
        disable=not progress,
        file=sys.stderr,
    )
    pending: deque[tuple[int, Future]] = deque()

    def take_oldest() -> None:
        count, future = pending.popleft()
        checkpoints.add(future.result())
        bar.update(count)

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        try:
            for first, images in source.batches(resumed_from, batch_size):
                if source.sends_image_files:
                    names = source.ids(first, first + len(images))
                    future = pool.submit(encoder.file_codes, images, names)
                else:
                    future = pool.submit(encoder.codes, images)
                pending.append((len(images), future))
                while len(pending) > in_flight:
                    take_oldest()
            while pending:
                take_oldest()
        except BaseException:
            for _, future in pending:
                future.cancel()
            store.discard_if_empty()
            raise
        finally:
            bar.close()
    store.finish(code_size)
    return PullResult(source.num_rows, resumed_from, time.monotonic() - started, version, code_size)
