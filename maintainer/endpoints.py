"""The daemon's one small HTTP listener: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers 200 while the scheduler runs and its heartbeat is fresh (a liveness probe);
``/readyz`` answers 200 when the database answers and every check of ``maintainer check`` passes
(a readiness probe); ``/metrics`` is the Prometheus exposition. Anything else is 404.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from maintainer.logs import json_value
from maintainer.metrics import REGISTRY

Probe = Callable[[], tuple[bool, dict[str, Any]]]


def serve(host: str, port: int, health: Probe, ready: Probe) -> ThreadingHTTPServer:
    """Listen on ``host:port`` in a background thread; OSError when the port cannot be bound."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, details = (health if path == "/healthz" else ready)()
                self._reply(200 if ok else 503, json.dumps(details, default=json_value).encode(), "application/json")
            else:
                self._reply(404, b'{"error": "not found"}', "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the JSON log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def probe_health(port: int) -> str | None:
    """Ask the local daemon's ``/healthz`` (``maintainer healthcheck``); None when it answers 200, else why not."""
    url = f"http://127.0.0.1:{port}/healthz"
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
    try:
        with local.open(url, timeout=3) as response:
            return None if response.status == 200 else f"{url}: HTTP {response.status}"
    except OSError as error:
        return f"{url}: {error}"
