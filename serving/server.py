"""The composition root: flags -> Options -> manager, data plane, gRPC and REST servers.

`tfsp-model-server` and `tfsp serve` both end up in `run(options)`. Config files are read
before TensorFlow is imported, so a bad flag or file fails in a fraction of a second. The
initial models load before the ports open, as in TF Serving. On SIGTERM/SIGINT every request
already received is answered, new ones get UNAVAILABLE, the batch queues drain and the server
exits 0 within --shutdown_grace_period_seconds (tfsp.serving.drain).
"""

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import sys

from tfsp.serving import config as config_mod
from tfsp.serving import drain
from tfsp.serving.config import ConfigError
from tfsp.serving.options import FlagError, Options, parse_flags

log = logging.getLogger("serving")
SERVER_VERSION = "tfsp-model-server 0.1.0 (TensorFlow Serving API compatible)"
GC_THRESHOLDS = (10_000, 10, 100)  # see _Server.__init__


@dataclasses.dataclass
class _Files:
    """Everything read from config files, checked before the heavy imports."""

    settings: list
    batching: config_mod.BatchingSettings | None
    prometheus_path: str | None
    tls: config_mod.TlsSettings | None
    session_config: bytes = b""
    request_logging: bool = False


def _read_files(options: Options) -> _Files:
    server_config = config_mod.server_config(options)
    settings = config_mod.model_settings(server_config)
    batching = (
        config_mod.batching_settings(options.batching_parameters_file)
        if options.enable_batching
        else None
    )
    # server.cc reads the monitoring file only for the HTTP server: with REST off it is
    # never opened, so neither a missing nor a broken file stops the start.
    prometheus = None
    if options.rest_api_port:
        prometheus = config_mod.monitoring_path(options.monitoring_config_file)
    elif options.monitoring_config_file:
        log.warning(
            "--monitoring_config_file is not read: --rest_api_port is 0, so there is no "
            "metrics endpoint"
        )
    return _Files(
        settings,
        batching,
        prometheus,
        config_mod.tls_settings(options.ssl_config_file),
        config_mod.session_config(options.tensorflow_session_config_file),
        config_mod.asks_for_request_logging(server_config),
    )


def setup_logging() -> None:
    """One line per event on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s serving] %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class _Server:
    """The running pieces, started and stopped in order."""

    def __init__(self, options: Options, files: _Files) -> None:
        import tensorflow as tf

        from tfsp.serving.batching import BatchScheduler
        from tfsp.serving.dataplane import DataPlane
        from tfsp.serving.loader import LoadOptions, VersionLoader
        from tfsp.serving.manager import ModelManager
        from tfsp.serving.metrics import Metrics
        from tfsp.serving.servable import SessionOptions
        from tfsp.serving.workers import ModelWorkers

        intra, inter = options.session_threads
        if intra > 0:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter > 0:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        self.options = options
        self.files = files
        self.metrics = Metrics()
        self.workers = ModelWorkers(max(4, 2 * (os.cpu_count() or 1)))
        # One pool of batch threads for every model, as TF Serving's SharedBatchScheduler.
        self.batch_scheduler = (
            BatchScheduler(files.batching.num_batch_threads, "batch")
            if files.batching is not None
            else None
        )
        load_options = LoadOptions(
            tags=options.meta_graph_tags,
            session=SessionOptions(
                intra, inter, options.per_process_gpu_memory_fraction, files.session_config
            ),
            batching=files.batching,
            per_model_batching=options.enable_per_model_batching_parameters,
            warmup=options.enable_model_warmup,
            warmup_iterations=options.num_request_iterations_for_warmup or 1,
            method_name_check=options.enable_signature_method_name_check,
        )
        loader = VersionLoader(load_options, self.workers, self.batch_scheduler, self.metrics)
        self.manager = ModelManager(
            loader.load,
            loader.make_runner,
            allow_unavailable_labels=options.allow_version_labels_for_unavailable_models,
            max_load_retries=options.max_num_load_retries,
            retry_interval_seconds=max(options.load_retry_interval_micros, 0) / 1e6,
            poll_seconds=options.file_system_poll_wait_seconds,
        )
        self.dataplane = DataPlane(
            self.manager,
            reload=self.reload,
            method_name_check=options.enable_signature_method_name_check,
        )
        self.gate = drain.Gate()
        self.pollers: list = []
        self.grpc_server = None
        self.health = None  # grpc.health.v1 servicer, with --enable_grpc_healthcheck_service
        self.rest_runner = None
        self._config_text = ""
        # What is imported by now (TensorFlow alone is millions of objects) lives as long as
        # the process: keep it out of the cyclic collector, whose full passes over it stopped
        # the event loop for ~230 ms at a time under load (~3 ms frozen). Models load after
        # this, so an unloaded version's objects stay collectable.
        gc.freeze()
        # gRPC's Python layer leaves ~5 objects in reference cycles per call, so the cyclic
        # collector runs all the time under load. With the default thresholds (700, 10, 10)
        # it took ~15 µs per request at 64 clients, half of it in full passes over a loaded
        # model's objects (~20 ms each, every ~1,500 requests). Rarer, larger young passes
        # and full passes 10x rarer cut that to ~5 µs; garbage cycles still die young.
        gc.set_threshold(*GC_THRESHOLDS)

    def reload(self, server_config: object) -> None:
        """Apply a ModelServerConfig (HandleReloadConfigRequest and config-file polling)."""
        from tfsp.serving.errors import invalid

        try:
            settings = config_mod.model_settings(server_config)
        except ConfigError as exc:
            raise invalid(str(exc)) from None
        self.manager.configure(settings)
        if config_mod.asks_for_request_logging(server_config):
            raise invalid(config_mod.NO_REQUEST_LOGGER)  # after the models, as there

    def _poll_config_file(self) -> None:
        from tensorflow_serving.config import model_server_config_pb2

        path = self.options.model_config_file
        try:
            parsed = config_mod.read_text_proto(path, model_server_config_pb2.ModelServerConfig())
        except ConfigError as exc:
            log.error("config file poll: %s; keeping the current config", exc)
            return
        # Applied on every poll, as TF Serving's server.cc does, changed or not: a reload
        # that failed (a label on a version still loading) succeeds on a later poll.
        text = str(parsed)
        if text != self._config_text:
            log.info("config file %s changed; reloading", path)
            self._config_text = text
        try:
            self.reload(parsed)
        except Exception as exc:
            log.error("config reload from %s failed: %s", path, getattr(exc, "message", exc))

    async def start(self) -> None:
        from tfsp.serving.manager import Poller

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.manager.configure, self.files.settings)
        if self.files.request_logging:  # after the models, as there
            raise ConfigError(config_mod.NO_REQUEST_LOGGER)
        if self.options.model_config_file:
            self._config_text = str(config_mod.server_config(self.options))
        await self._start_grpc()
        await self._start_rest()
        if self.options.file_system_poll_wait_seconds > 0:
            self.pollers.append(
                Poller(
                    "version-poller", self.options.file_system_poll_wait_seconds, self.manager.poll
                ).start()
            )
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self.pollers.append(
                Poller(
                    "config-poller",
                    self.options.model_config_file_poll_wait_seconds,
                    self._poll_config_file,
                ).start()
            )

    async def _start_grpc(self) -> None:
        import grpc

        from tfsp.serving.grpc_service import add_health_service, add_services
        from tfsp.serving.options import INT32_MAX

        options = self.options
        channel_args = dict(options.channel_arguments)
        channel_args.setdefault("grpc.max_receive_message_length", INT32_MAX)
        channel_args.setdefault("grpc.max_send_message_length", INT32_MAX)
        server = grpc.aio.server(options=list(channel_args.items()))
        if options.grpc_max_threads == 1:
            log.warning(
                "--grpc_max_threads=1: the one gRPC thread only waits for calls, so every "
                "call is refused with RESOURCE_EXHAUSTED, as in TF Serving"
            )
        add_services(
            server,
            self.dataplane,
            self.metrics,
            options.grpc_max_threads,
            outputs_as_tensor_content=options.enable_serialization_as_tensor_content,
            gate=self.gate,
        )
        if options.enable_grpc_healthcheck_service:
            self.health = await add_health_service(server)
        tls = self.files.tls
        credentials = None
        if tls is not None:
            credentials = grpc.ssl_server_credentials(
                [(tls.server_key, tls.server_cert)],
                root_certificates=tls.custom_ca,
                require_client_auth=tls.client_verify,
            )
        addresses = []
        if options.port:
            addresses.append(f"0.0.0.0:{options.port}")
        if options.grpc_socket_path:
            addresses.append(f"unix:{options.grpc_socket_path}")
        for address in addresses:
            try:
                if credentials is None:
                    server.add_insecure_port(address)
                else:
                    server.add_secure_port(address, credentials)
            except RuntimeError as exc:
                raise ConfigError(f"cannot listen for gRPC on {address}: {exc}") from None
        await server.start()
        self.grpc_server = server
        for address in addresses:
            log.info("Running gRPC ModelServer at %s ...", address)

    async def _start_rest(self) -> None:
        if not self.options.rest_api_port:
            return
        from aiohttp import web

        from tfsp.serving.rest import app_runner, build_app

        if self.options.rest_api_num_threads == 1:
            log.warning(
                "--rest_api_num_threads=1: the HTTP event loop takes the one REST thread, so "
                "no REST request is ever answered, as in TF Serving"
            )
        app = build_app(
            self.dataplane,
            self.metrics,
            timeout_ms=self.options.rest_api_timeout_in_ms,
            threads=self.options.rest_api_num_threads,
            read_timeout_ms=self.options.rest_api_read_timeout_in_ms,
            cors=self.options.rest_api_enable_cors_support,
            prometheus_path=self.files.prometheus_path,
            gate=self.gate,
        )
        runner = app_runner(
            app,
            read_timeout_ms=self.options.rest_api_read_timeout_in_ms,
            # what is left of the grace period when drain() closes the listeners
            shutdown_timeout=max(
                0.0,
                self.options.shutdown_grace_period_seconds
                - drain.INTAKE_SECONDS
                - drain.REFUSAL_SECONDS,
            ),
        )
        await runner.setup()
        site = web.TCPSite(runner, "0.0.0.0", self.options.rest_api_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen for REST on port {self.options.rest_api_port}: {exc.strerror}"
            ) from None
        self.rest_runner = runner
        # server.cc's words: it names localhost, though it listens on every interface
        log.info("Exporting HTTP/REST API at:localhost:%d ...", self.options.rest_api_port)
        if self.files.prometheus_path:
            log.info("Prometheus metrics at %s", self.files.prometheus_path)

    async def _close_listeners(self, grace_seconds: float) -> None:
        stops = []
        if self.grpc_server is not None:
            stops.append(self.grpc_server.stop(grace_seconds))
        if self.rest_runner is not None:
            stops.append(self._stop_rest(grace_seconds))
        await asyncio.gather(*stops)

    async def _stop_rest(self, grace_seconds: float) -> None:
        """Close the REST listener; requests still being handled when `grace_seconds` are up
        are ended, as gRPC ends its calls then."""
        from tfsp.serving.rest import cancel_running_handlers

        cleanup = asyncio.ensure_future(self.rest_runner.cleanup())
        await asyncio.wait({cleanup}, timeout=grace_seconds)
        if not cleanup.done() and (ended := cancel_running_handlers(self.rest_runner.app)):
            log.info("the grace period is over: ended %d REST request(s) still running", ended)
        await cleanup

    async def stop(self, drain_calls: bool = True) -> None:
        """Stop: with `drain_calls`, answer what was received and refuse new calls first
        (tfsp.serving.drain), within --shutdown_grace_period_seconds."""
        loop = asyncio.get_running_loop()
        for poller in self.pollers:
            await loop.run_in_executor(None, poller.stop)
        if self.health is not None:
            await self.health.shut_down()
        if drain_calls:
            await drain.drain(
                self.gate, self.options.shutdown_grace_period_seconds, self._close_listeners
            )
        else:
            await self._close_listeners(0.0)
        self.manager.interrupt()  # a reload waiting for a new model's first version gives up
        await loop.run_in_executor(None, self.manager.shutdown)
        if self.batch_scheduler is not None:
            await loop.run_in_executor(None, self.batch_scheduler.close)
        self.workers.shutdown(wait=True)


async def _serve(options: Options, files: _Files) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = _Server(options, files)
    starting = asyncio.ensure_future(server.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():  # a signal while the first config's models are awaited
        server.manager.interrupt()
    try:
        await starting
    except ConfigError as exc:
        log.error("Failed to start server: %s", exc)
        await server.stop(drain_calls=False)
        return 1
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc)
        log.error("Failed to start server: %s", message)
        await server.stop(drain_calls=False)
        return 1
    if stop.is_set():
        log.info("signal received during startup")
    await stop.wait()
    log.info("shutting down: no new requests; draining in-flight ones")
    await server.stop()
    log.info("stopped")
    return 0


def run(options: Options) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a clean drain)."""
    setup_logging()
    if options.version:
        print(SERVER_VERSION)
        return 0
    try:
        files = _read_files(options)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # libuv's event loop: the loop thread is what saturates first under load, and uvloop's
    # scheduling costs it less per call than asyncio's pure-Python loop (benchmarks/
    # serving_bench.py, README "What moved the serving figures"). Imported here, like the
    # other [full]-install modules, so flags and --version work on any install.
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(options, files))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tfsp-model-server` (tensorflow_model_server's flags)."""
    try:
        options = parse_flags(sys.argv[1:] if argv is None else argv)
    except FlagError as exc:
        print(f"error: {exc} (see 'tfsp-model-server --help')", file=sys.stderr)
        return 2
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
