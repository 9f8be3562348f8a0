"""maintainer's JSON log lines, parsed: from a subprocess's output, or captured in this process."""

from __future__ import annotations

import io
import json
from typing import Any

from maintainer import logs


def json_lines(text: str) -> list[dict[str, Any]]:
    """The complete JSON lines of ``text``: a line still being written, or plain text (the closing
    ``maintainer: ...`` message of a failure outside JSON mode), is left out."""
    complete = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    return [json.loads(line) for line in complete if line.startswith("{")]


def named(lines: list[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    """The lines of ``event`` whose fields include ``fields``."""
    return [line for line in lines if line["event"] == event and all(line.get(k) == v for k, v in fields.items())]


class LogLines:
    """The JSON lines maintainer logs in this process while a test runs, parsed."""

    def __init__(self) -> None:
        self._stream = io.StringIO()
        logs.configure("json", stream=self._stream)

    def all(self) -> list[dict[str, Any]]:
        return json_lines(self._stream.getvalue())

    def events(self) -> list[str]:
        return [line["event"] for line in self.all()]

    def named(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return named(self.all(), event, **fields)
