"""`tfsp serve`, `tfsp predict`, `tfsp status`, `tfsp metadata`: argparse setup and handlers.

Registered in tfsp/cli.py with `add_commands(subparsers)`. Heavy imports (TensorFlow, gRPC
stubs) happen inside the handlers, so `--help` and flag errors answer at once.
"""

import argparse
import sys
from pathlib import Path

from tfsp import argtypes
from tfsp.errors import UserError, one_line
from tfsp.signatures import IMAGE_BYTES_INPUT, IMAGES_INPUT, PREDICT_IMAGE_BYTES, PREDICT_IMAGES


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
    """Add serve/predict/status/metadata to the `tfsp` command parser."""
    from tfsp.serving.options import add_flags

    serve = subparsers.add_parser(
        "serve",
        help="run the TF-Serving-compatible model server (gRPC and REST)",
        description="tensorflow_model_server's flags, e.g. --port=8500 --rest_api_port=8501 "
        "--model_name=cnn --model_base_path=.tfsp/serving/cnn",
        allow_abbrev=False,
    )
    add_flags(serve)
    serve.set_defaults(handler=_cmd_serve)

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
    source.add_argument("--npy", type=Path, help="a numpy .npy file")
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
    predict.set_defaults(handler=_cmd_predict)

    status = subparsers.add_parser("status", help="a served model's versions and their states")
    _add_address_flags(status)
    status.set_defaults(handler=_cmd_status)

    metadata = subparsers.add_parser("metadata", help="a served model's signatures")
    _add_address_flags(metadata)
    metadata.set_defaults(handler=_cmd_metadata)


def _cmd_serve(args: argparse.Namespace) -> int:
    from tfsp.serving.options import FlagError, options_from_namespace
    from tfsp.serving.server import run

    try:
        options = options_from_namespace(args)
    except FlagError as exc:
        print(f"error: {exc} (see 'tfsp serve --help')", file=sys.stderr)
        return 2
    return run(options)


def _load_inputs(args: argparse.Namespace) -> tuple[str, str, object]:
    """(signature, input name, value): the image file's bytes, or the .npy's pixels."""
    import numpy as np

    if args.image is not None:
        if args.invert:
            raise UserError("--invert applies to --npy only: the model detects an image's polarity")
        try:
            encoded = args.image.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read image {args.image}: {exc.strerror or exc}") from None
        value = np.empty(1, dtype=object)
        value[0] = encoded
        return args.signature or PREDICT_IMAGE_BYTES, IMAGE_BYTES_INPUT, value
    try:
        array = np.load(args.npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {args.npy}: {one_line(exc)}") from None
    array = np.asarray(array, dtype=np.float32)
    if array.size % 1024 or array.size == 0:
        raise UserError(f"{args.npy}: shape {list(array.shape)} is not N×32×32 pixels")
    if args.invert:
        array = 1.0 - array
    return args.signature or PREDICT_IMAGES, IMAGES_INPUT, array.reshape(-1, 32, 32, 1)


def _rest_instances(value: object) -> list:
    # TF Serving's JSON for bytes: {"b64": ...}, one per row.
    import base64

    if value.dtype == object:  # type: ignore[attr-defined]
        return [{"b64": base64.b64encode(row).decode()} for row in value]  # type: ignore[attr-defined]
    return value.tolist()  # type: ignore[attr-defined]


def _describe(spec_version: object, args: argparse.Namespace) -> str:
    if spec_version:
        return f"version {spec_version}"
    if args.version is not None:
        return f"version {args.version}"
    return f"label {args.label}" if args.label else "latest version"


def _cmd_predict(args: argparse.Namespace) -> int:
    signature, input_name, value = _load_inputs(args)
    from tfsp.serving.client import ClientError, RestClient, ServingClient

    try:
        if args.rest:
            client = RestClient(args.rest_server, timeout=args.timeout)
            reply = client.predict(
                args.model,
                instances=_rest_instances(value),
                signature=signature,
                version=args.version,
                label=args.label,
            )
            rows = reply["predictions"]
            probabilities = [row["probabilities"] for row in rows]
            answered, via = _describe(None, args), f"REST {client.address}"
        else:
            with ServingClient(args.server, timeout=args.timeout) as client:
                spec, outputs = client.predict(
                    args.model,
                    {input_name: value},
                    signature=signature,
                    version=args.version,
                    label=args.label,
                )
            probabilities = outputs["probabilities"].tolist()
            answered, via = _describe(spec.version.value, args), f"gRPC {client.address}"
    except ClientError as exc:
        raise UserError(str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise UserError(f"unexpected response (no {one_line(exc)})") from None
    print(f"model {args.model} {answered} ({signature}, {via})")
    for index, row in enumerate(probabilities):
        best = max(range(len(row)), key=row.__getitem__)
        print(f"image {index}: class {best}  p={row[best]:.3f}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from tfsp.serving.client import ClientError, RestClient, ServingClient

    try:
        if args.rest:
            reply = RestClient(args.rest_server, timeout=args.timeout).status(
                args.model, version=args.version, label=args.label
            )
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

            with ServingClient(args.server, timeout=args.timeout) as client:
                response = client.status(args.model, version=args.version, label=args.label)
            states = protos.ModelVersionStatus.State
            rows = [
                (
                    v.version,
                    states.Name(v.state),
                    _code_name(v.status.error_code),
                    v.status.error_message,
                )
                for v in response.model_version_status
            ]
    except ClientError as exc:
        raise UserError(str(exc)) from None
    print(f"model {args.model}")
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


def _cmd_metadata(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from tfsp.serving.client import ClientError, RestClient, ServingClient

    try:
        if args.rest:
            reply = RestClient(args.rest_server, timeout=args.timeout).metadata(
                args.model, version=args.version, label=args.label
            )
            version = reply["model_spec"].get("version", "?")
            signatures = reply["metadata"]["signature_def"]["signature_def"]
        else:
            with ServingClient(args.server, timeout=args.timeout) as client:
                spec, defs = client.metadata(args.model, version=args.version, label=args.label)
            version = spec.version.value
            signatures = {
                name: json_format.MessageToDict(d, preserving_proto_field_name=True)
                for name, d in defs.items()
            }
    except ClientError as exc:
        raise UserError(str(exc)) from None
    print(f"model {args.model} version {version}")
    for name in sorted(s for s in signatures if not s.startswith("__")):
        signature = signatures[name]
        print(f"  signature {name} ({signature.get('method_name', '')})")
        for kind in ("inputs", "outputs"):
            for key, info in sorted(signature.get(kind, {}).items()):
                dtype = info.get("dtype", "?")
                print(f"    {kind[:-1]:<6} {key}: {dtype} {_shape(info)}")
    return 0
