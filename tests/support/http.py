"""The daemon's HTTP listener as a client sees it: replies, free ports, and the metrics it exposes."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# Requests to the daemon go straight to it, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: str

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def get(port: int, path: str) -> Reply:
    """GET ``path`` from 127.0.0.1:``port``; an error status is a Reply too. OSError when nothing answers."""
    try:
        with DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return Reply(response.status, response.headers["Content-Type"], response.read().decode())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, error.headers["Content-Type"], error.read().decode())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def scrape(port: int) -> list[Metric]:
    reply = get(port, "/metrics")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("text/plain"), reply.content_type
    return list(text_string_to_metric_families(reply.body))


def sample(families: list[Metric], name: str, **labels: str) -> float | None:
    """The value of the one sample ``name`` with exactly ``labels``, or None when there is none."""
    values = [s.value for family in families for s in family.samples if s.name == name and s.labels == labels]
    assert len(values) <= 1, f"{len(values)} samples {name}{labels}"
    return values[0] if values else None
