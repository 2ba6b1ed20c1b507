"""One loaded model version, loaded and called the way TF Serving does it.

TF Serving loads a SavedModel with TensorFlow's C++ `LoadSavedModel`: import the MetaGraph
into a fresh graph, run the saver's restore op, run the init op, then run each signature in a
Session by its input and output tensor names. This module takes that same path through
`tf.compat.v1.saved_model.loader.load` into a `tf.compat.v1.Session`. It deliberately does
not use TF2's object loader (`tf.saved_model.load`): that path restores function captures
from the object graph and so runs models whose signatures read variables the restore op
never fills, which TF Serving cannot (production-facts.md, keras-team/keras#19274).
"""

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow.python.client import pywrap_tf_session as tf_session
from tensorflow.python.saved_model import loader_impl

from tfsp.serving.errors import tensorflow_message

log = logging.getLogger("serving")

# TensorFlow's Python binding crashes the process (SIGSEGV) converting a DT_STRING tensor of
# more than 32 dimensions to or from numpy, in Session::Run's feed or fetch (found by
# tests/test_serving_fuzz.py; on TF 2.21 32 works and 33 crashes, empty or not, which looks
# like a fixed buffer of numpy 1's 32 NPY_MAXDIMS). Numeric dtypes convert fine up to numpy's
# 64. TF Serving converts nothing and has no such limit: here a feed past it is refused, and
# a signature declaring such an output is refused at load.
STRING_MAX_RANK = 32


class LoadError(Exception):
    """A version folder that cannot be served; the message is one line.

    `code` is the gRPC status number GetModelStatus reports for it (None: the manager's
    default for the message).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    """Every model's session config, built as TF Serving's server.cc builds it: the
    `--tensorflow_session_config_file` ConfigProto (`base`, serialized), then the GPU
    memory fraction and both thread counts from the flags, always (a 0 there replaces the
    file's count, as in TF Serving)."""

    intra_op_threads: int = 0  # 0: TensorFlow picks
    inter_op_threads: int = 0
    gpu_memory_fraction: float = 0.0  # 0: TensorFlow's default (nearly all of each GPU)
    base: bytes = b""

    def config(self) -> config_pb2.ConfigProto:
        """The ConfigProto each session is created with."""
        config = config_pb2.ConfigProto.FromString(self.base)
        config.gpu_options.per_process_gpu_memory_fraction = self.gpu_memory_fraction
        config.intra_op_parallelism_threads = self.intra_op_threads
        config.inter_op_parallelism_threads = self.inter_op_threads
        # Nothing else, placement included: TF Serving does not set allow_soft_placement,
        # so a graph pinned to a device the node lacks fails to load there, and here. TF2
        # exports are not affected: their function calls carry TF2's own soft placement.
        return config


# DirectSession's DEADLINE_EXCEEDED text for a run past its RunOptions timeout.
RUN_TIMED_OUT = "Timed out waiting for notification"

# Call shapes (signature, input and output keys in request order) whose tensor names are
# remembered; past this, names are read from the SignatureDef on each call.
_MAX_REMEMBERED = 4096


@dataclasses.dataclass
class Servable:
    """A SavedModel version: its SignatureDefs and the Session that runs them."""

    name: str
    version: int
    path: str
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    session: tf.compat.v1.Session
    # Seconds spent in each stage of the load, as TensorFlow's loader.cc times them for
    # load_latency_by_stage: "restore_graph" (reading the SavedModel through restoring the
    # variables) and "init_graph" (the init op).
    load_stages: dict[str, float] = dataclasses.field(default_factory=dict)
    # Graph outputs by tensor name (names come from the SignatureDefs, not from clients).
    _outputs: dict[str, object] = dataclasses.field(default_factory=dict)
    _tensor_names: dict[tuple, tuple] = dataclasses.field(default_factory=dict)

    def run(
        self,
        signature: str,
        inputs: dict[str, np.ndarray],
        output_keys: list[str] | None = None,
        *,
        run_tensors: Callable[[dict[str, np.ndarray], tuple[str, ...]], list] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs by alias (names and dtypes already checked).

        Outputs are `output_keys` (default: every output of the signature), as numpy arrays.
        The session run goes through `run_tensors` (default: this servable's session; warmup
        passes the version's runner, batching included).
        Errors are TensorFlow's own (`tf.errors.OpError` subclasses), as from Session::Run.
        """
        keys = tuple(output_keys or self.signature_defs[signature].outputs)
        feed_names, fetches = self.tensor_names(signature, tuple(inputs), keys)
        run = run_tensors or self.run_tensors
        values = run(dict(zip(feed_names, inputs.values(), strict=True)), fetches)
        return dict(zip(keys, values, strict=True))

    def tensor_names(
        self, signature: str, input_keys: tuple[str, ...], output_keys: tuple[str, ...]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The tensor names a call of `signature` feeds (for `input_keys`, in order) and
        fetches (for `output_keys`), as TF Serving turns a request into a session run.
        Remembered per call shape: every request pays a dict lookup, not protobuf reads."""
        key = (signature, input_keys, output_keys)
        names = self._tensor_names.get(key)
        if names is None:
            definition = self.signature_defs[signature]
            names = (
                tuple(definition.inputs[alias].name for alias in input_keys),
                tuple(definition.outputs[alias].name for alias in output_keys),
            )
            if len(self._tensor_names) < _MAX_REMEMBERED:  # call shapes are the client's
                self._tensor_names[key] = names  # a race computes the same value twice
        return names

    def run_tensors(
        self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], timeout_ms: int = 0
    ) -> list:
        """Session::Run by tensor names, as TF Serving calls its session: the values of
        `fetches` (numpy arrays, in order) with `feeds` fed. `timeout_ms` > 0 is the run's
        RunOptions timeout (TF Serving sets it from the client's deadline): past it the run
        is cancelled with TensorFlow's DEADLINE_EXCEEDED. Errors are TensorFlow's own."""
        for name, array in feeds.items():
            if array.ndim > STRING_MAX_RANK and array.dtype.kind in "OSU":
                raise tf.errors.InvalidArgumentError(
                    None,
                    None,
                    f"input '{name}': DT_STRING tensors of more than {STRING_MAX_RANK} "
                    f"dimensions are not supported by tfsp serve (got {array.ndim})",
                )
        # Fetched once each, in sorted order, whatever the caller's order or repeats: a
        # client permuting its output filter then reuses one DirectSession executor.
        fetch_names = tuple(sorted(set(fetches)))
        feed_dict = {self._output(name, feeds, fetch_names): value for name, value in feeds.items()}
        fetch_list = [self._output(name, feeds, fetch_names) for name in fetch_names]
        options = None
        if timeout_ms > 0:
            run_options = config_pb2.RunOptions(timeout_in_ms=timeout_ms).SerializeToString()
            options = tf_session.TF_NewBufferFromString(run_options)
        try:
            # The C API's Session::Run, as TF Serving makes it: unlike Session.run's Python
            # path it does not refuse feeds whose shape differs from the placeholder's; the
            # graph's ops decide (predict_util.cc).
            values = self.session._call_tf_sessionrun(options, feed_dict, fetch_list, [], None)
        except UnicodeDecodeError as exc:
            # The graph failed and its error text quotes request bytes that are not UTF-8
            # (a garbled serialized tf.Example): TensorFlow cannot turn that status into a
            # Python exception and its code is lost. An op that quotes its input refused
            # that input, which TF Serving reports as INVALID_ARGUMENT.
            raw = exc.object if isinstance(exc.object, bytes) else str(exc).encode()
            message = raw.decode("utf-8", errors="backslashreplace")
            raise tf.errors.InvalidArgumentError(None, None, message) from None
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)
        if fetch_names == fetches:
            return values
        by_name = dict(zip(fetch_names, values, strict=True))
        return [by_name[name] for name in fetches]

    def _output(self, name: str, feeds: dict[str, np.ndarray], fetches: tuple[str, ...]) -> object:
        """The graph output `name` stands for, read as TensorFlow's ParseTensorName reads it
        ("op:index", or "op" for output 0). A name the graph does not have is refused by
        TensorFlow itself, in the words Session::Run would use."""
        found = self._outputs.get(name)
        if found is not None:
            return found
        op_name, _, index = name.rpartition(":")
        if not (op_name and index.isdigit()):
            op_name, index = name, "0"
        try:
            found = self.session.graph.get_operation_by_name(op_name).outputs[int(index)]
        except (KeyError, ValueError, IndexError):
            # Making the run's callable raises TensorFlow's own error for the bad name; the
            # error below is only for a name TensorFlow reads and this lookup does not.
            options = config_pb2.CallableOptions(feed=sorted(feeds), fetch=fetches)
            self.session._make_callable_from_options(options)
            raise tf.errors.InvalidArgumentError(None, None, f"no tensor {name}") from None
        self._outputs[name] = found = found._as_tf_output()
        return found

    def close(self) -> None:
        """Release the session (its variables and thread pools)."""
        self.session.close()


def read_meta_graph(path: str, tags: set[str]) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraph tagged `tags` in the SavedModel folder `path` (local or any file system
    TensorFlow reads, gs:// included); LoadError (one line) if there is none."""
    pb = os.path.join(str(path), "saved_model.pb")
    if not tf.io.gfile.exists(pb):
        raise LoadError(f"no saved_model.pb in {path}")
    saved = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(pb, "rb") as f:
            saved.ParseFromString(f.read())
    except tf.errors.OpError as exc:
        raise LoadError(f"cannot read {pb}: {exc.message}") from None
    except Exception:  # the protobuf runtime raises several types for garbage input
        raise LoadError(f"{pb} is not a SavedModel protobuf") from None
    for graph in saved.meta_graphs:
        if set(graph.meta_info_def.tags) == tags:
            return graph
    # TensorFlow's reader.cc: NOT_FOUND, in these words; the tag-sets there are ours.
    found = [sorted(g.meta_info_def.tags) for g in saved.meta_graphs]
    raise LoadError(
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(tags))} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        f"`saved_model_cli` ({pb} has {found})",
        tf.errors.NOT_FOUND,
    )


# Python's Saver.restore wraps a failed restore run in advice about an altered graph
# (saver.py, _wrap_restore_error_with_msg); TF Serving's C++ loader returns the run's own status.
_RESTORE_ADVICE = "Restoring from checkpoint failed."


def _load_failure(folder: str, exc: Exception) -> LoadError:
    """The LoadError for a failed load: TensorFlow's own message and code for its errors."""
    cause = exc.__context__
    if str(exc).startswith(_RESTORE_ADVICE) and isinstance(cause, tf.errors.OpError):
        exc = cause
    if isinstance(exc, tf.errors.OpError):
        text, code = tensorflow_message(exc.message), exc.error_code
    else:
        text, code = " ".join(str(exc).split())[:500] or type(exc).__name__, None
    return LoadError(f"loading {folder} failed: {text}", code)


def load_servable(
    name: str,
    version: int,
    path: str,
    tags: tuple[str, ...] = ("serve",),
    session_options: SessionOptions = SessionOptions(),
) -> Servable:
    """Load one version folder as TF Serving does; LoadError (one line) if it cannot be.

    A model whose restore or init op fails, or whose signature declares a DT_STRING output
    of more than STRING_MAX_RANK dimensions, is refused here. One whose signatures read
    variables that nothing restored loads (as in TF Serving) and fails its first call;
    warmup (tfsp.serving.warmup) is what catches that before the version becomes available.
    """
    folder = str(path)  # not Path: it would fold gs://bucket into gs:/bucket
    started = time.perf_counter()
    # Read first: a missing or garbled file, or a signature no call could survive, is a clear
    # LoadError before any session exists.
    _check_string_outputs(read_meta_graph(folder, set(tags)).signature_def)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=session_options.config())
    try:
        # tf.compat.v1.saved_model.loader.load's own steps, taken one by one so that the
        # restore and the init op are timed apart, as loader.cc times them.
        loader = loader_impl.SavedModelLoader(folder)
        with graph.as_default():
            saver, _ = loader.load_graph(graph, list(tags))
            loader.restore_variables(session, saver)
            restored = time.perf_counter()
            loader.run_init_ops(session, list(tags))
        initialized = time.perf_counter()
        meta_graph = loader.get_meta_graph_def_from_tags(list(tags))
    except Exception as exc:
        session.close()
        raise _load_failure(folder, exc) from exc
    graph.finalize()  # nothing may add ops to a serving graph after load
    return Servable(
        name=name,
        version=version,
        path=folder,
        signature_defs=dict(meta_graph.signature_def),
        session=session,
        load_stages={"restore_graph": restored - started, "init_graph": initialized - restored},
    )


def _check_string_outputs(signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]) -> None:
    """LoadError for a signature output that would take the process down whenever a call
    fetches it (warmup included): a DT_STRING of more than STRING_MAX_RANK static dimensions."""
    for signature, definition in sorted(signature_defs.items()):
        for alias, info in sorted(definition.outputs.items()):
            rank = len(info.tensor_shape.dim)
            if info.dtype == tf.string.as_datatype_enum and rank > STRING_MAX_RANK:
                raise LoadError(
                    f"signature '{signature}' output '{alias}': DT_STRING tensors of more "
                    f"than {STRING_MAX_RANK} dimensions are not supported by tfsp serve "
                    f"(declared {rank}; TF Serving has no such limit)"
                )
