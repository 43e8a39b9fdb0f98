"""``edge-runtime run | validate``: parse the command line and call the runtime.

``run`` takes daprd's flag names (``--app-id``, ``--dapr-http-port`` ...) plus ours
(``--data-dir``, ``--durability`` ...). As with ``dapr run``, everything after ``--`` is started
as the app.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime import __version__
from edge_runtime.config.settings import Settings, default_data_dir, parse_quantity
from edge_runtime.support import gctune

if TYPE_CHECKING:
    from edge_runtime.runtime.runtime import Runtime


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0 picks a free one), got {text}")
    return value


def _size(text: str) -> int:
    try:
        return parse_quantity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _app_protocol(text: str) -> str:
    if text in ("http", "grpc"):
        return text
    if text in ("grpcs", "https", "h2c"):
        raise argparse.ArgumentTypeError(
            f"{text} (daprd's TLS/h2c channel to the app) is not supported: use http or grpc"
        )
    raise argparse.ArgumentTypeError(f"expected http or grpc, got {text!r}")


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the sidecar (and the app given after --)",
        description="Run the sidecar. Everything after -- is started as the app.",
    )
    p.add_argument("--app-id", required=True, help="the app's id: state key prefix, MQTT client id")
    p.add_argument("--app-port", type=_port, help="the port the app listens on")
    p.add_argument(
        "--app-protocol", type=_app_protocol, default="http", help="http (default) or grpc"
    )
    p.add_argument("--app-channel-address", default="127.0.0.1")
    p.add_argument("--dapr-http-port", type=_port, default=3500, help="0 picks a free port")
    p.add_argument("--dapr-grpc-port", type=_port, default=50001, help="0 picks a free port")
    p.add_argument(
        "--disable-grpc-api",
        action="store_true",
        help="no gRPC API: grpc is never imported (a lean HTTP-only profile)",
    )
    p.add_argument(
        "--dapr-listen-addresses",
        default="127.0.0.1",
        help="address the Dapr API listens on (default loopback only; wider logs a warning)",
    )
    p.add_argument(
        "--unix-domain-socket",
        type=Path,
        default=None,
        help="a folder: serve the HTTP API on <dir>/dapr-http-<app-id>.socket (mode 0660) "
        "instead of TCP",
    )
    p.add_argument("--metrics-port", type=_port, default=9090, help="0 picks a free port")
    p.add_argument("--enable-metrics", default="true", choices=["true", "false"])
    p.add_argument(
        "--resources-path",
        "--components-path",
        action="append",
        default=[],
        dest="resources_path",
        help="folder of component YAML (repeatable)",
    )
    p.add_argument(
        "--max-body-size",
        type=_size,
        default="4Mi",
        help="largest request body, e.g. 4Mi (default)",
    )
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"]
    )
    p.add_argument("--log-as-json", action="store_true")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="databases and runtime.json ($STATE_DIRECTORY, else ./.edge-runtime)",
    )
    p.add_argument(
        "--durability",
        choices=["full", "normal"],
        default="full",
        help="full: fsync before every ack (default); normal: a power cut may lose "
        "the last commits",
    )
    p.add_argument(
        "--commit-window-ms",
        type=float,
        default=2.0,
        help="longest extra wait to gather writes into one commit, taken only while writes "
        "are frequent (default 2; 0: batch only what queued during the previous commit; "
        "larger saves flash writes, see docs/performance.md)",
    )
    p.add_argument(
        "--max-disk-mb",
        type=float,
        default=None,
        help="disk budget for the data dir; writes beyond it get ERR_STORAGE_FULL",
    )
    p.add_argument("--dapr-graceful-shutdown-seconds", type=float, default=5.0)
    _add_invocation(p)
    p.add_argument("app", nargs=argparse.REMAINDER, help="-- then the app's command line")


def _add_invocation(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, default=None,
        help="a Configuration resource (daprd's): nameResolution for invoking other sidecars",
    )
    p.add_argument(
        "--internal-grpc-port", type=_port, default=None,
        help="serve invocations from other sidecars on this port (0 picks one); off by default",
    )
    p.add_argument(
        "--internal-grpc-listen-address", default="0.0.0.0",  # noqa: S104 - for other devices
        help="address of the internal port (default all interfaces)",
    )
    p.add_argument(
        "--internal-token", default=None,
        help="shared token between sidecars (better: env EDGE_RUNTIME_INTERNAL_TOKEN)",
    )
    p.add_argument("--internal-tls-cert", type=Path, default=None, help="PEM certificate (mTLS)")
    p.add_argument("--internal-tls-key", type=Path, default=None, help="PEM private key (mTLS)")
    p.add_argument("--internal-tls-ca", type=Path, default=None, help="PEM CA of the peers (mTLS)")
    p.add_argument(
        "--internal-tls-server-name", default=None,
        help="name to expect in the peers' certificates (default: the host in the address)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="edge-runtime", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edge-runtime {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    v = sub.add_parser("validate", help="check a resources folder and list every problem")
    v.add_argument(
        "--resources-path",
        "--components-path",
        action="append",
        default=[],
        dest="resources_path",
        required=True,
    )
    v.add_argument("--app-id", default=None, help="check scopes as this app")
    o = sub.add_parser("outbox", help="show the messages waiting in the outbox, per relay")
    o.add_argument("--data-dir", type=Path, default=None)
    from edge_runtime.inbox import deadletters

    d = sub.add_parser("deadletters", help="list or replay the local dead letters")
    deadletters.add_arguments(d)
    from edge_runtime.cloudsync import cli as cloud_cli

    cloud_cli.add_arguments(sub.add_parser("cloud", help="cloud sync: serve, status, certs"))
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed ``run`` arguments and the environment."""
    app = list(args.app)
    if app and app[0] == "--":
        app = app[1:]
    return Settings(
        app_id=args.app_id,
        app_port=args.app_port,
        app_protocol=args.app_protocol,
        app_channel_address=args.app_channel_address,
        dapr_http_port=args.dapr_http_port,
        dapr_grpc_port=args.dapr_grpc_port,
        disable_grpc_api=args.disable_grpc_api,
        dapr_listen_address=args.dapr_listen_addresses,
        unix_domain_socket=args.unix_domain_socket,
        metrics_port=args.metrics_port,
        enable_metrics=args.enable_metrics == "true",
        resources_paths=tuple(Path(p) for p in args.resources_path),
        max_body_size=args.max_body_size,
        log_level=args.log_level,
        log_as_json=args.log_as_json,
        data_dir=args.data_dir or default_data_dir(),
        durability=args.durability,
        commit_window_ms=args.commit_window_ms,
        max_disk_mb=args.max_disk_mb,
        graceful_shutdown_s=args.dapr_graceful_shutdown_seconds,
        api_token=os.environ.get("DAPR_API_TOKEN") or None,
        app_api_token=os.environ.get("APP_API_TOKEN") or None,
        namespace=os.environ.get("NAMESPACE", ""),
        app_command=tuple(app),
        config_path=args.config,
        internal_grpc_port=args.internal_grpc_port,
        internal_grpc_listen_address=args.internal_grpc_listen_address,
        internal_token=args.internal_token
        or os.environ.get("EDGE_RUNTIME_INTERNAL_TOKEN")
        or None,
        internal_tls_cert=args.internal_tls_cert,
        internal_tls_key=args.internal_tls_key,
        internal_tls_ca=args.internal_tls_ca,
        internal_tls_server_name=args.internal_tls_server_name,
    )


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.observability.logging import setup
    from edge_runtime.runtime.runtime import Runtime

    settings = settings_from_args(args)
    setup(settings.log_level, as_json=settings.log_as_json, app_id=settings.app_id)
    if settings.app_protocol == "grpc":
        # Before the gRPC app channel imports its messages, whichever of it and the gRPC API
        # comes first: only the Dapr messages in use are loaded.
        from edge_runtime.support import daprproto

        daprproto.prepare()
    log = logging.getLogger("edge_runtime")
    gctune.tune()
    # uvloop where it is installed (not on armv7: no wheel); EDGE_RUNTIME_LOOP=asyncio opts out.
    if os.environ.get("EDGE_RUNTIME_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            log.info("event loop: uvloop")
            return uvloop.run(_serve(Runtime(settings)))
    log.info("event loop: asyncio")
    return asyncio.run(_serve(Runtime(settings)))


SETTLE_AFTER_S = 2.0  # after ready: the first requests are not held up by the collection


async def _serve(runtime: Runtime) -> int:
    """Run the sidecar; once it serves, settle the garbage collector (:mod:`gctune`)."""
    loop = asyncio.get_running_loop()
    settled: list[asyncio.TimerHandle] = []

    def ready(_: object) -> None:
        if runtime.ready.is_set():
            settled.append(loop.call_later(SETTLE_AFTER_S, gctune.settle))

    waiter = asyncio.ensure_future(runtime.ready.wait())
    waiter.add_done_callback(ready)
    try:
        return await runtime.run()
    finally:
        waiter.cancel()
        for handle in settled:
            handle.cancel()


def _validate(args: argparse.Namespace) -> int:
    from edge_runtime.builtin import builtin_registry
    from edge_runtime.config.validate import validate

    problems = validate(
        [Path(p) for p in args.resources_path], registry=builtin_registry(), app_id=args.app_id
    )
    for p in problems:
        print(p)  # noqa: T201 - this command's output is the list
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)  # noqa: T201 - summary
        return 1
    print("no problems found", file=sys.stderr)  # noqa: T201 - summary
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-runtime`` script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "outbox":
        return _outbox(args)
    if args.command == "cloud":
        from edge_runtime.cloudsync import cli as cloud_cli

        return cloud_cli.run(args)
    if args.command == "deadletters":
        from edge_runtime.inbox import deadletters

        return deadletters.run(args)
    return _validate(args)


def _outbox(args: argparse.Namespace) -> int:
    from edge_runtime.outbox.cli import backlogs, render

    try:
        print(render(backlogs(args.data_dir or default_data_dir())))  # noqa: T201 - the output
    except OSError as exc:
        print(f"edge-runtime outbox: {exc}", file=sys.stderr)  # noqa: T201 - the error
        return 1
    return 0
