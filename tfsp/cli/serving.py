"""`tfsp serve`, `tfsp predict`, `tfsp status`, `tfsp metadata`: the model server and its
clients. Heavy imports (TensorFlow, gRPC stubs) happen inside the handlers, so `--help` and
flag errors answer at once.
"""

import argparse
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tfsp.cli.common import command, from_flags, grpc_client
from tfsp.core import argtypes
from tfsp.core.errors import UsageError, UserError, one_line
from tfsp.core.signatures import (
    IMAGE_BYTES_INPUT,
    IMAGES_INPUT,
    PREDICT_IMAGE_BYTES,
    PREDICT_IMAGES,
    PROBABILITIES_KEY,
)

if TYPE_CHECKING:  # the client module imports grpc
    from tfsp.serving.client import RestClient


@dataclass(frozen=True)
class Target:
    """Which model version to ask, and how to reach its server."""

    model: str
    version: int | None
    label: str | None
    rest: bool  # the REST API instead of gRPC
    server: str | None  # gRPC host:port (None: $TFSP_SERVER, else localhost:8500)
    rest_server: str | None
    timeout: float

    def describe(self, answered_version: object = None) -> str:
        """The version that answered, else the one asked for."""
        if answered_version:
            return f"version {answered_version}"
        if self.version is not None:
            return f"version {self.version}"
        return f"label {self.label}" if self.label else "latest version"

    def ask(self, method: str) -> tuple[bool, object]:
        """Call the clients' `method` (status, metadata) for the target: (whether it went
        over REST, the reply: a JSON dict over REST, what the gRPC client returns else)."""
        from tfsp.serving.client import ClientError

        which = {"version": self.version, "label": self.label}
        try:
            if self.rest:
                return True, getattr(self.rest_client(), method)(self.model, **which)
            with grpc_client(self.server, self.timeout) as client:
                return False, getattr(client, method)(self.model, **which)
        except ClientError as exc:
            raise UserError(str(exc)) from None

    def rest_client(self) -> "RestClient":
        """The REST client for --rest-server; a malformed address is a flag error."""
        from tfsp.serving.client import RestClient

        try:
            return RestClient(self.rest_server, timeout=self.timeout)
        except ValueError as exc:
            raise UsageError(f"--rest-server: {exc}") from None


def _target(args: argparse.Namespace) -> Target:
    return from_flags(Target, args)


def _add_address_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name (e.g. cnn)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--version", type=argtypes.non_negative_int, help="a specific version number"
    )
    which.add_argument("--label", help="a version label from the server's config")
    parser.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    parser.add_argument(
        "--server", help="gRPC host:port (default: $TFSP_SERVER, else localhost:8500)"
    )
    parser.add_argument(
        "--rest-server",
        help="REST host:port for --rest (default: $TFSP_REST_SERVER, else localhost:8501)",
    )
    parser.add_argument(
        "--timeout",
        type=argtypes.positive_float,
        default=30.0,
        help="seconds per call (default 30)",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add serve, predict, status and metadata."""
    from tfsp.serving import tf_flags
    from tfsp.serving.options import add_flags

    serve = subparsers.add_parser(
        "serve",
        usage=tf_flags.USAGE,
        formatter_class=tf_flags.FlagHelpFormatter,
        help="run the TF-Serving-compatible model server (gRPC and REST)",
        description="tensorflow_model_server's flags, values as --flag=value (TensorFlow's "
        "flag syntax), e.g. --port=8500 --rest_api_port=8501 --model_name=cnn "
        "--model_base_path=$PWD/.tfsp/serving/cnn (an absolute path or URI, as TF Serving "
        "requires)",
        allow_abbrev=False,
    )
    add_flags(serve)
    command(serve, serve_models, options=_server_options)

    predict = subparsers.add_parser(
        "predict",
        help="classify digit images with a served model",
        description="Send an image file (PNG/JPEG/GIF/BMP, any size, grey or colour, dark ink "
        f"on light or the reverse) to the model's '{PREDICT_IMAGE_BYTES}' signature, which "
        "frames it in the model as the training images were framed; or a .npy array of "
        "32×32 pixels ([32,32], [32,32,1], [N,32,32,1], [1024] or [N,1024], values in [0,1], "
        f"ink bright) to '{PREDICT_IMAGES}'. Prints each image's class.",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="an image file")
    source.add_argument("--npy", type=Path, help="a numpy .npy file of N×32×32 pixels in [0, 1]")
    predict.add_argument(
        "--invert",
        action="store_true",
        help="with --npy: the arrays are dark ink on light (an --image's polarity is detected "
        "by the model)",
    )
    predict.add_argument(
        "--signature",
        help=f"signature (default {PREDICT_IMAGE_BYTES} for --image, {PREDICT_IMAGES} for --npy)",
    )
    _add_address_flags(predict)
    command(predict, predict_images, target=_target)

    status = subparsers.add_parser("status", help="a served model's versions and their states")
    _add_address_flags(status)
    command(status, show_status, target=_target)

    metadata = subparsers.add_parser("metadata", help="a served model's signatures")
    _add_address_flags(metadata)
    command(metadata, show_metadata, target=_target)


def _server_options(args: argparse.Namespace) -> object:
    from tfsp.serving.options import FlagError, options_from_namespace

    try:
        return options_from_namespace(args)
    except FlagError as exc:
        raise UsageError(f"{exc} (see 'tfsp serve --help')") from None


def serve_models(options: object) -> int:
    """`tfsp serve`: run the model server with these Options until SIGTERM/SIGINT."""
    from tfsp.serving.server import run

    return run(options)


def _load_inputs(
    image: Path | None, npy: Path | None, invert: bool, signature: str | None
) -> tuple[str, str, object]:
    """(signature, input name, value): the image file's bytes, or the .npy's pixels."""
    import numpy as np

    from tfsp.serving.feature_sources import check_pixel_values

    if image is not None:
        if invert:
            raise UsageError(
                "--invert applies to --npy only: the model detects an image's polarity"
            )
        try:
            encoded = image.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read image {image}: {exc.strerror or exc}") from None
        value = np.empty(1, dtype=object)
        value[0] = encoded
        return signature or PREDICT_IMAGE_BYTES, IMAGE_BYTES_INPUT, value
    try:
        array = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        # numpy takes any file without the .npy header for a pickle, and says so
        reason = "not a .npy array file" if "pickled" in str(exc) else one_line(exc)
        raise UserError(f"cannot read {npy}: {reason}") from None
    if array.dtype.kind not in "biuf":  # bool, signed, unsigned, float: pixel numbers
        raise UserError(f"{npy}: holds {array.dtype} values, not pixel numbers")
    if array.size % 1024 or array.size == 0:
        raise UserError(f"{npy}: shape {list(array.shape)} is not N×32×32 pixels")
    images = np.asarray(array, dtype=np.float32).reshape(-1, 32, 32, 1)
    check_pixel_values(images, str(npy))
    if invert:
        images = 1.0 - images
    return signature or PREDICT_IMAGES, IMAGES_INPUT, images


def _rest_instances(value: object) -> list:
    # TF Serving's JSON for bytes: {"b64": ...}, one per row.
    import base64

    if value.dtype == object:  # type: ignore[attr-defined]
        return [{"b64": base64.b64encode(row).decode()} for row in value]  # type: ignore[attr-defined]
    return value.tolist()  # type: ignore[attr-defined]


def _check_classifier(model: str, signature: str, outputs: Collection[str]) -> None:
    """Refuse an answer without class probabilities (an encoder's codes, say), naming what
    the signature answered instead."""
    if PROBABILITIES_KEY not in outputs:
        raise UserError(
            f"model {model}'s {signature} answers {', '.join(sorted(outputs))}, not "
            f"'{PROBABILITIES_KEY}': 'tfsp predict' prints a classifier's classes; pull an "
            "encoder's codes with 'tfsp features'"
        )


def _rest_output_names(rows: list) -> list[str]:
    """The outputs a REST Predict answered: TF Serving's row format names them only when
    there are several."""
    return sorted(rows[0]) if rows and isinstance(rows[0], dict) else ["one unnamed output"]


def predict_images(
    target: Target, image: Path | None, npy: Path | None, invert: bool, signature: str | None
) -> int:
    """`tfsp predict`: send an image file or a .npy array; print each image's class."""
    # the address is a flag: checked before any file is read
    client = target.rest_client() if target.rest else grpc_client(target.server, target.timeout)
    signature, input_name, value = _load_inputs(image, npy, invert, signature)
    from tfsp.serving.client import ClientError

    which = {"version": target.version, "label": target.label}
    try:
        if target.rest:
            reply = client.predict(
                target.model, instances=_rest_instances(value), signature=signature, **which
            )
            rows = reply["predictions"]
            _check_classifier(target.model, signature, _rest_output_names(rows))
            probabilities = [row[PROBABILITIES_KEY] for row in rows]
            answered, via = target.describe(), f"REST {client.address}"
        else:
            with client:
                spec, outputs = client.predict(
                    target.model, {input_name: value}, signature=signature, **which
                )
            _check_classifier(target.model, signature, outputs)
            probabilities = outputs[PROBABILITIES_KEY].tolist()
            answered, via = target.describe(spec.version.value), f"gRPC {client.address}"
    except ClientError as exc:
        raise UserError(str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise UserError(f"unexpected response (no {one_line(exc)})") from None
    print(f"model {target.model} {answered} ({signature}, {via})")
    for index, row in enumerate(probabilities):
        best = max(range(len(row)), key=row.__getitem__)
        print(f"image {index}: class {best}  p={row[best]:.3f}")
    return 0


def show_status(target: Target) -> int:
    """`tfsp status`: a served model's versions and their states."""
    over_rest, reply = target.ask("status")
    if over_rest:
        rows = [
            (
                int(v["version"]),
                v["state"],
                v["status"].get("error_code", "OK"),
                v["status"].get("error_message", ""),
            )
            for v in reply.get("model_version_status", [])
        ]
    else:
        from tfsp.serving import protos

        states = protos.ModelVersionStatus.State
        rows = [
            (
                v.version,
                states.Name(v.state),
                _code_name(v.status.error_code),
                v.status.error_message,
            )
            for v in reply.model_version_status
        ]
    print(f"model {target.model}")
    for version, state, code, message in rows:
        detail = f"  {code}: {message}" if code not in ("OK", 0) else ""
        print(f"  version {version:<12} {state:<10}{detail}")
    return 0


def _code_name(code: int) -> str:
    import grpc

    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


def _shape(info: dict) -> str:
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return "?"
    return "[" + ", ".join(str(d.get("size", "?")) for d in shape.get("dim", [])) + "]"


def show_metadata(target: Target) -> int:
    """`tfsp metadata`: a served model's signatures, inputs and outputs."""
    from google.protobuf import json_format

    over_rest, reply = target.ask("metadata")
    if over_rest:
        version = reply["model_spec"].get("version", "?")
        signatures = reply["metadata"]["signature_def"]["signature_def"]
    else:
        spec, defs = reply
        version = spec.version.value
        signatures = {
            name: json_format.MessageToDict(d, preserving_proto_field_name=True)
            for name, d in defs.items()
        }
    print(f"model {target.model} version {version}")
    for name in sorted(s for s in signatures if not s.startswith("__")):
        signature = signatures[name]
        print(f"  signature {name} ({signature.get('method_name', '')})")
        for kind in ("inputs", "outputs"):
            for key, info in sorted(signature.get(kind, {}).items()):
                dtype = info.get("dtype", "?")
                print(f"    {kind[:-1]:<6} {key}: {dtype} {_shape(info)}")
    return 0
