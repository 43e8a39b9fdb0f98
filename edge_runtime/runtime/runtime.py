"""The composition root: load, build, serve, run the app, and shut down in reverse.

Start order (DESIGN.md §5, daprd's): open the databases (components), open the API ports
(outbound health turns green, systemd READY), start the app when one is given after ``--``,
then wait for the app's port (health turns green). Stop runs the other way: stop accepting
requests and let in-flight ones finish, stop the app, close the databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from edge_runtime import __version__
from edge_runtime.api.bindings import OutputBindings
from edge_runtime.api.configuration import Configurations
from edge_runtime.api.http import bindings as http_bindings
from edge_runtime.api.http import configuration as http_configuration
from edge_runtime.api.http import invoke as http_invoke
from edge_runtime.api.http import meta as http_meta
from edge_runtime.api.http import publish as http_publish
from edge_runtime.api.http import state as http_state
from edge_runtime.api.http.app import HttpApp, Request, Response, route
from edge_runtime.api.http.server import HttpServer, bind, bind_unix, is_loopback
from edge_runtime.api.publishing import Publisher
from edge_runtime.api.universal import RuntimeView, Universal
from edge_runtime.builtin import builtin_registry
from edge_runtime.config.loader import load_resources
from edge_runtime.config.settings import Settings
from edge_runtime.errors import ComponentError
from edge_runtime.observability import metrics
from edge_runtime.outbox.store import open_database
from edge_runtime.registry import Registry
from edge_runtime.runtime.app_process import AppProcess, app_env, wait_for_port
from edge_runtime.runtime.binding_inputs import BindingInputs
from edge_runtime.runtime.build import Builder, StartError, data_loss_notes
from edge_runtime.runtime.invocation import InvocationSetup
from edge_runtime.runtime.subscribing import SubscribeError, Subscriptions
from edge_runtime.support import clockwatch, systemd
from edge_runtime.support.atomicfile import write_atomic
from edge_runtime.support.disk import DiskBudget
from edge_runtime.support.sqlitedb import Database

log = logging.getLogger("edge_runtime.runtime")

EXIT_FORCED = 1
EXIT_START_FAILED = 1


class Runtime:
    """One sidecar. ``await run()`` returns the process exit code."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        *,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self._handle_signals = handle_signals
        self.registry = registry or builtin_registry()
        self.view = RuntimeView(
            app_id=settings.app_id,
            namespace=settings.namespace,
            app_port=settings.app_port,
            app_protocol=settings.app_protocol,
            app_channel_address=settings.app_channel_address,
        )
        self._stop = asyncio.Event()
        self._forced = False
        self._servers: list[HttpServer] = []
        self._grpc: Any = None  # edge_runtime.api.grpc.GrpcServer, imported lazily
        self._app: AppProcess | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.core: Universal | None = None
        self.ready = asyncio.Event()
        self.publisher: Publisher | None = None
        self._outbox_db: Database | None = None
        self.subscriptions: Subscriptions | None = None
        self.builder: Builder | None = None
        self.binding_inputs: BindingInputs | None = None
        self.invocation: InvocationSetup | None = None
        self.cloud: list[Any] = []  # started cloudsync.grpc components
        self.configurations: Configurations | None = None

    # ----------------------------------------------------------------- public
    def request_shutdown(self, force: bool = False) -> None:
        """Stop soon (after the current reply); ``force`` exits 1 in ~100 ms, ungracefully."""
        loop = asyncio.get_running_loop()
        if force:
            log.warning("forced shutdown requested: exiting with code 1 without draining")
            loop.call_later(0.1, os._exit, EXIT_FORCED)
            return
        log.info("shutdown requested through the API")
        loop.call_soon(self._stop.set)

    async def run(self) -> int:
        """Start everything, serve until told to stop, stop everything; the exit code."""
        started = time.monotonic()
        try:
            await self._start()
        except StartError as exc:
            log.error("cannot start: %s", exc)  # noqa: TRY400 - the message is the whole story
            await self._stop_all()
            return EXIT_START_FAILED
        self.ready.set()
        log.info(
            "edge-runtime %s ready in %.0f ms", __version__, (time.monotonic() - started) * 1000
        )
        code = await self._serve()
        systemd.notify("STOPPING=1\nSTATUS=stopping")
        await self._stop_all()
        return code

    # ----------------------------------------------------------------- start
    async def _start(self) -> None:
        s = self.settings
        if self._handle_signals:
            # Before READY: a SIGTERM right after readiness must stop us gracefully.
            self._install_signals()
        try:
            s.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartError(f"cannot create the data dir {s.data_dir}: {exc}") from None
        budget = DiskBudget(s.data_dir, int(s.max_disk_mb * 1024 * 1024) if s.max_disk_mb else None)
        resources = load_resources(list(s.resources_paths))
        if resources.problems:
            for p in resources.problems:
                log.error("%s", p)
            raise StartError(
                f"{len(resources.problems)} problem(s) in the resources; "
                "run `edge-runtime validate` for the list"
            )
        self._outbox_db = outbox_database(s, budget)
        try:
            await self._outbox_db.open()
        except ComponentError as exc:
            raise StartError(f"cannot open the outbox: {exc}") from None
        self.builder = Builder(s, self.registry, budget, self._outbox_db)
        self.subscriptions = Subscriptions(s, self.builder.components, resources.others, budget)
        try:
            await self.subscriptions.open()
        except (SubscribeError, ComponentError) as exc:
            raise StartError(str(exc)) from None
        self.builder.before_connect = self.subscriptions.subscribe_component
        self.view.subscriptions = self.subscriptions.describe
        components = await self.builder.build_all(resources.components)
        # Before cloud sync starts, so that its status (cloudsync.json) carries the loss too.
        self.view.data_loss = data_loss_notes(components) + [
            f"{name}: corrupt database quarantined to {path}"
            for name, db in (("outbox", self._outbox_db), ("inbox", self.subscriptions.inbox.db))
            for path in db.quarantined
        ]
        if any(c.manifest.type.lower() == "cloudsync.grpc" for c in components.loaded):
            from edge_runtime.runtime.cloud import start_cloud_sync  # cbor2: only with cloud sync

            self.cloud = await start_cloud_sync(components, self._outbox_db, self.view)
        await self.subscriptions.start()
        for relay in self.builder.relays:
            relay.start()
        self.view.components_ready = True
        self.core = Universal(self.view, components, self.request_shutdown)
        self.publisher = Publisher(self.view, components)
        assert self.subscriptions.binding_retry is not None, "read by Subscriptions.open"
        self.binding_inputs = BindingInputs(
            s, components, self.subscriptions.inbox, self.subscriptions.binding_retry,
            channel=self.subscriptions.channel, publisher=self.publisher, core=self.core,
            view=self.view,
        )
        await self.binding_inputs.start()
        self.invocation = InvocationSetup(s, self.view, resources.others)
        self.invocation.open()
        self.configurations = Configurations(
            components.configuration, http_configuration.app_poster(self.invocation.invoking))
        await self._open_ports()
        self._write_runtime_json()
        where = self.view.ports.get("http", str(self._unix_socket() or ""))
        systemd.notify(f"READY=1\nSTATUS=serving the Dapr API on port {where}")
        if (dog := systemd.start_watchdog()) is not None:
            self._tasks.append(dog)  # cancelled first on stop, after STOPPING=1
        self._tasks.append(clockwatch.start())  # logs wall-clock jumps (NTP sync, date -s)
        await self._start_app()

    async def _open_ports(self) -> None:
        s = self.settings
        assert self.core is not None
        assert self.publisher is not None
        assert self.invocation is not None
        invoking = self.invocation.invoking
        assert invoking is not None
        api = HttpApp(
            http_state.routes(self.core)
            + http_publish.routes(self.publisher)
            + http_bindings.routes(OutputBindings(self.core.components))
            + http_meta.routes(self.core)
            + http_invoke.routes(invoking)
            + (http_configuration.routes(self.configurations) if self.configurations else []),
            max_body_size=s.max_body_size,
            api_token=s.api_token,
            fallback=http_invoke.fallback(invoking),
        )
        if not is_loopback(s.dapr_listen_address):
            log.warning(
                "the Dapr API listens on %s, beyond this machine: anyone who can reach it can "
                "call it%s", s.dapr_listen_address,
                "" if s.api_token else " (no DAPR_API_TOKEN is set)",
            )
        listeners: list[tuple[str, HttpApp, int]] = [("http", api, s.dapr_http_port)]
        if s.enable_metrics:
            listeners.append(("metrics", _metrics_app(), s.metrics_port))
        for name, app, port in listeners:
            uds = s.unix_domain_socket / f"dapr-http-{s.app_id}.socket" if (
                name == "http" and s.unix_domain_socket is not None) else None
            where = str(uds) if uds else f"{s.dapr_listen_address}:{port}"
            try:
                sock = bind_unix(uds) if uds else bind(s.dapr_listen_address, port)
            except OSError as exc:
                raise StartError(
                    f"cannot listen on {where} for the {name} API: {exc.strerror or exc}"
                ) from None
            server = HttpServer(app, sock, name=name, graceful_s=s.graceful_shutdown_s)
            await server.start()
            self._servers.append(server)
            if uds is None:
                self.view.ports[name] = server.port
            else:
                log.info("the HTTP API listens on the Unix socket %s", uds)
        if not s.disable_grpc_api:
            await self._open_grpc()
        await self.invocation.start_server()
        self.view.ports_open = True
        metrics.UP.set(1)
        log.info("listening: %s", " ".join(f"{k}={v}" for k, v in self.view.ports.items()))

    async def _open_grpc(self) -> None:
        s = self.settings
        assert self.core is not None
        assert self.publisher is not None
        try:  # lazily: HTTP-only devices never load grpc
            from edge_runtime.api.grpc import GrpcServer
        except ImportError as exc:
            log.warning("gRPC API disabled (install the grpc extra to enable it): %s", exc)
            return
        from edge_runtime.runtime.streaming import StreamHub

        streams = None
        if self.subscriptions is not None:
            streams = StreamHub(self.subscriptions, self.publisher.check)
        server = GrpcServer(
            self.core, self.publisher, host=s.dapr_listen_address, port=s.dapr_grpc_port,
            api_token=s.api_token, max_message_size=s.max_body_size,
            graceful_s=s.graceful_shutdown_s, streams=streams,
            invoking=self.invocation.invoking if self.invocation else None,
            configurations=self.configurations,
        )
        try:
            await server.start()
        except OSError as exc:
            raise StartError(
                f"cannot listen on {s.dapr_listen_address}:{s.dapr_grpc_port} for the "
                f"grpc API: {exc}"
            ) from None
        self._grpc = server
        self.view.ports["grpc"] = server.port

    def _write_runtime_json(self) -> None:
        path = self.settings.data_dir / "runtime.json"
        doc = {
            "pid": os.getpid(),
            "appId": self.settings.app_id,
            "ports": self.view.ports,
            "version": __version__,
        }
        if (uds := self._unix_socket()) is not None:
            doc["unixDomainSocket"] = str(uds)
        write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())

    def _unix_socket(self) -> Path | None:
        """The HTTP API's socket file (``--unix-domain-socket``), else ``None``."""
        return next((p for srv in self._servers if (p := srv.unix_path) is not None), None)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        if self._app is not None:
            self._app.send_signal(signum)
        self._stop.set()

    async def _start_app(self) -> None:
        s = self.settings
        if s.app_command:
            env = app_env(
                os.environ,
                http_port=self.view.ports.get("http", s.dapr_http_port),
                grpc_port=self.view.ports.get("grpc", s.dapr_grpc_port),
                app_id=s.app_id,
                app_port=s.app_port,
            )
            self._app = AppProcess(s.app_command, env)
            try:
                await self._app.start()
            except OSError as exc:
                raise StartError(str(exc)) from None
        if s.app_port is None:
            self.view.app_ready = True
            return
        self._tasks.append(asyncio.create_task(self._wait_app(), name="wait-for-app"))

    async def _wait_app(self) -> None:
        s = self.settings
        assert s.app_port is not None
        log.info("waiting for the app on %s:%d", s.app_channel_address, s.app_port)
        await wait_for_port(s.app_channel_address, s.app_port)
        if self.subscriptions is not None:
            await self.subscriptions.app_is_ready()
        if self.binding_inputs is not None:
            await self.binding_inputs.app_is_ready()
        self.view.app_ready = True
        log.info("the app is listening on %s:%d", s.app_channel_address, s.app_port)

    # ----------------------------------------------------------------- serve
    async def _serve(self) -> int:
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._stop.wait())]
        if self._app is not None:
            waits.append(asyncio.ensure_future(self._app.wait()))
        _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        if self._app is None:
            return 0
        if self._app.proc is not None and self._app.proc.returncode is not None:
            code = await self._app.wait()
            log.info("the app exited with code %d: shutting down", code)
            return code
        code_or_none = await self._app.stop(self.settings.graceful_shutdown_s)
        return code_or_none or 0

    async def _stop_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        metrics.UP.set(0)
        if self.invocation is not None:
            await self.invocation.stop_server()
        if self._grpc is not None:
            await self._grpc.stop()
            self._grpc = None
        for server in reversed(self._servers):
            await server.stop()
        self._servers.clear()
        if self._app is not None:
            await self._app.stop(self.settings.graceful_shutdown_s)
        if self.invocation is not None:
            await self.invocation.close()
        if self.configurations is not None:
            await self.configurations.close()
        for comp in self.cloud:  # before the stores it reads close
            await comp.stop_client()
        if self.builder is not None:
            for relay in self.builder.relays:
                await relay.stop()
        if self.subscriptions is not None:
            await self.subscriptions.stop_delivery()
        if self.binding_inputs is not None:
            await self.binding_inputs.stop()
        if self.builder is not None:
            await self.builder.close_all()  # brokers disconnect: no more inbox writes
        if self.subscriptions is not None:
            await self.subscriptions.close()
        if self._outbox_db is not None:
            await self._outbox_db.close()
        with contextlib.suppress(OSError):
            (self.settings.data_dir / "runtime.json").unlink()
        log.info("stopped")


def outbox_database(s: Settings, budget: DiskBudget) -> Database:
    """``<data-dir>/outbox.db`` with the process durability settings."""
    return open_database(
        s.data_dir / "outbox.db", durability=s.durability, commit_window_ms=s.commit_window_ms,
        disk_budget=budget, quarantine_dir=s.data_dir / "quarantine",
    )


def _metrics_app() -> HttpApp:
    async def scrape(req: Request) -> Response:
        return Response(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    return HttpApp([route("GET", "/metrics", scrape, "metrics")], max_body_size=4096)
