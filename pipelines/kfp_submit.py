"""Submit a compiled pipeline package to Kubeflow Pipelines with the KFP client.

Kept apart from kubeflow_runner.py so that submitting does not load TFX or TensorFlow: a
connection problem is reported within seconds.
"""

import contextlib
import logging
import socket
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tfsp.core.errors import UsageError, UserError, one_line

# KFP's v2beta1 health endpoint (the one kfp.Client checks first).
HEALTHZ_PATH = "/apis/v2beta1/healthz"


def read_kfp_package(path: Path) -> tuple[dict, dict]:
    """The pipeline spec and platform spec of a package written by `write_kfp_package`."""
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except FileNotFoundError:
        raise UserError(f"no pipeline package at {path}; run 'tfsp pipeline compile'") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not YAML: {one_line(err)}") from None
    if not docs or not isinstance(docs[0], dict) or "pipelineInfo" not in docs[0]:
        raise UserError(
            f"{path} is not a KFP pipeline package (submit the .yaml that compile writes, "
            "not the .json PipelineJob)"
        )
    return docs[0], docs[1] if len(docs) > 1 else {}


def parse_params(pairs: Sequence[str], pipeline_spec: Mapping) -> dict:
    """`k=v` strings as typed values of the pipeline's run-time parameters."""
    definitions = pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    params: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected NAME=VALUE")
        if key not in definitions:
            known = ", ".join(sorted(definitions)) or "none"
            raise UsageError(f"--param {key}: not a parameter of this pipeline (known: {known})")
        kind = definitions[key].get("parameterType", "STRING")
        try:
            if kind == "NUMBER_INTEGER":
                value: object = int(text)
            elif kind == "NUMBER_DOUBLE":
                value = float(text)
            elif kind == "BOOLEAN":
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                value = text.lower() == "true"
            else:
                value = text
        except ValueError:
            raise UsageError(f"--param {key}={text}: expected a {kind.lower()}") from None
        params[key] = value
    return params


def _preflight(host: str, timeout: float) -> None:
    """Fail in one line, within about `timeout`, unless a KFP API may be listening at `host`.

    kfp.Client would otherwise wait without limit on an unreachable host, and retry a wrong
    URL's health check for half a minute, logging tracebacks.
    """
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--host {host}: expected an http(s) URL, e.g. http://localhost:8080")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"--host {host}: bad port") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        raise UserError(
            f"cannot reach Kubeflow Pipelines at {host}: {one_line(err)} "
            "(is the KFP UI/API port-forwarded or exposed?)"
        ) from None
    health = f"{host.rstrip('/')}{HEALTHZ_PATH}"
    # No proxies from the environment: kfp.Client does not use them either.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(health, timeout=timeout).close()
    except urllib.error.HTTPError as err:
        # 404 means this is not KFP (a wrong port or path). Anything else (401, 403 from an
        # auth proxy, 5xx) is left for the KFP client, which may carry credentials.
        if err.code == 404:
            raise UserError(
                f"no Kubeflow Pipelines API at {host} (GET {HEALTHZ_PATH}: HTTP 404)"
            ) from None
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"cannot talk to Kubeflow Pipelines at {host}: {one_line(err)}") from None


def submit_package(
    host: str,
    package: Path,
    *,
    params: Sequence[str] = (),
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    pipeline_root: str | None = None,
    timeout: float = 10.0,
) -> str:
    """Create a run of `package` on the KFP at `host` and return the run's URL.

    The run is created with `pipeline_root`, else the package's defaultPipelineRoot: KFP's
    backend reads the root only from the run request, never from the package.
    """
    pipeline_spec, _ = read_kfp_package(package)
    arguments = parse_params(params, pipeline_spec)
    pipeline_root = pipeline_root or pipeline_spec.get("defaultPipelineRoot")
    _preflight(host, timeout)

    import kfp
    import kfp_server_api
    import urllib3

    previous = socket.getdefaulttimeout()
    # kfp.Client passes no timeout to its HTTP calls; urllib3 then uses the socket default.
    socket.setdefaulttimeout(timeout)
    try:
        # The KFP client prints its own "details" links (stdout is for our one result line),
        # warns that it needs KFP >= 2.0.0b2, and logs tracebacks of retried calls.
        with (
            contextlib.redirect_stdout(sys.stderr),
            warnings.catch_warnings(),
            _logging_off(),
        ):
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host, namespace=namespace or "kubeflow")
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=pipeline_root,
            )
    except kfp_server_api.ApiException as err:
        raise UserError(
            f"Kubeflow Pipelines at {host} refused the run: HTTP {err.status} {err.reason}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as err:
        raise UserError(f"cannot talk to Kubeflow Pipelines at {host}: {one_line(err)}") from None
    finally:
        socket.setdefaulttimeout(previous)
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}"


@contextlib.contextmanager
def _logging_off() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
