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
