"""``edge-runtime cloud serve | status | certs``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from edge_runtime.config.settings import default_data_dir

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``cloud`` subcommands."""
    sub = p.add_subparsers(dest="cloud_command", required=True)
    s = sub.add_parser("serve", help="run the cloud runtime (sync endpoint and HTTP API)")
    s.add_argument("--grpc-port", type=int, default=50051, help="device sync port (0: free)")
    s.add_argument("--http-port", type=int, default=8080, help="HTTP API port (0: free)")
    s.add_argument("--host", default="0.0.0.0", help="listen address")  # noqa: S104
    s.add_argument("--store", default="sqlite:///cloud.db",
                   help="sqlite:///path/to/cloud.db (default sqlite:///cloud.db)")
    s.add_argument("--token", default=None,
                   help="token of the HTTP API (better: env EDGE_CLOUD_TOKEN)")
    s.add_argument("--device-token", default=None,
                   help="token devices present (better: env EDGE_CLOUD_DEVICE_TOKEN)")
    s.add_argument("--tls-cert", type=Path, default=None, help="server certificate (mTLS)")
    s.add_argument("--tls-key", type=Path, default=None, help="server key (mTLS)")
    s.add_argument("--tls-ca", type=Path, default=None, help="CA of the device certificates")
    s.add_argument("--device-rate", type=float, default=0.0,
                   help="records/s each device may send (0: no cap)")
    s.add_argument("--window", type=int, default=8, help="batches in flight per device")
    s.add_argument("--ports-file", type=Path, default=None,
                   help="write the bound ports here as JSON")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    st = sub.add_parser("status", help="cloud sync status of this device, from the data dir")
    st.add_argument("--data-dir", type=Path, default=None)
    c = sub.add_parser("certs", help="make a CA, a server certificate and device certificates")
    c.add_argument("--out", type=Path, required=True, help="folder to write the PEM files to")
    c.add_argument("--device", action="append", default=[], dest="devices",
                   help="a device id (repeatable); its certificate's CN")
    c.add_argument("--server-name", action="append", default=[], dest="server_names",
                   help="DNS name or IP of the cloud (repeatable; default localhost, 127.0.0.1)")
    c.add_argument("--days", type=int, default=825)


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; the exit code."""
    if args.cloud_command == "status":
        from edge_runtime.cloudsync.status import read_status, render

        try:
            print(render(read_status(args.data_dir or default_data_dir())))  # noqa: T201
        except OSError as exc:
            print(f"edge-runtime cloud status: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        return 0
    if args.cloud_command == "certs":
        from edge_runtime.cloudsync.certs import make_certs

        try:
            written = make_certs(args.out, args.devices,
                                 server_names=args.server_names or ("localhost", "127.0.0.1"),
                                 days=args.days)
        except (OSError, ValueError) as exc:
            print(f"edge-runtime cloud certs: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        for path in written:
            print(path)  # noqa: T201 - the output is the list of files
        return 0
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from edge_runtime.cloudsync.server.main import CloudOptions, serve
    from edge_runtime.cloudsync.server.service import ServiceLimits
    from edge_runtime.observability.logging import setup

    setup(args.log_level, as_json=False, app_id="cloud")
    token = args.token or os.environ.get("EDGE_CLOUD_TOKEN", "")
    if not token:
        print("edge-runtime cloud serve: the HTTP API needs a token: --token or env"  # noqa: T201
              " EDGE_CLOUD_TOKEN", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls) and not all(tls):
        print("edge-runtime cloud serve: mutual TLS needs --tls-cert, --tls-key and"  # noqa: T201
              " --tls-ca", file=sys.stderr)
        return 2
    options = CloudOptions(
        store_url=args.store, token=token,
        device_token=args.device_token or os.environ.get("EDGE_CLOUD_DEVICE_TOKEN", ""),
        grpc_port=args.grpc_port, http_port=args.http_port, host=args.host,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
        ports_file=args.ports_file,
        limits=ServiceLimits(window=args.window, rate=args.device_rate),
    )
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(options))
    return uvloop.run(serve(options))
