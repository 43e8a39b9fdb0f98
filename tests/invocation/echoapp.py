"""What the test apps answer to invocations, shared by the in-process and process tests.

``echo`` answers ``/status/<code>`` with that code and a text body, ``/slow`` never (the caller
times out), ``/dapr/subscribe`` with no subscriptions, and anything else with a JSON echo of the
request as the app saw it. Every answer carries ``x-app: <name>``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.appchannel.appserver import Reply, Request


def echo_body(req: Request) -> dict[str, Any]:
    path, _, query = req.path.partition("?")
    return {
        "method": req.method,
        "path": path,
        "query": query,
        "headers": {k.lower(): v for k, v in req.headers},
        "body": req.body.decode("utf-8", "replace"),
    }


def echo(name: str = "echo") -> Any:
    """A ``respond`` function for :class:`~tests.appchannel.appserver.AppServer`."""

    def respond(req: Request) -> Reply:
        path = req.path.partition("?")[0]
        if path == "/dapr/subscribe":
            return Reply(200, b"[]")
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return Reply(code, f"app says {code}".encode(), "text/plain", headers={"x-app": name})
        if path == "/slow":
            return Reply(hang=True)
        return Reply(200, json.dumps(echo_body(req)).encode(), headers={"x-app": name})

    return respond


async def _serve_until_terminated() -> None:
    """``python -m tests.invocation.echoapp``: :func:`echo` named ``$APP_ID`` on
    ``127.0.0.1:$APP_PORT`` (as a sidecar starts its app) until SIGTERM."""
    import asyncio
    import os
    import signal

    from tests.appchannel.appserver import AppServer

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with AppServer(echo(os.environ["APP_ID"]), port=int(os.environ["APP_PORT"])):
        await stop.wait()


if __name__ == "__main__":
    import asyncio

    asyncio.run(_serve_until_terminated())
