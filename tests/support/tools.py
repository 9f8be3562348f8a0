"""Real tools from Debian's packages that some tests drive: found on PATH, or the test skips and says which
package to install. ``.ci/run`` installs them and sets REQUIRE_TEST_TOOLS=1, under which a missing
tool fails the test instead: in CI these tests must run."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(command: str, package: str) -> str:
    """The path of ``command``; skips (fails in CI) when it is not installed."""
    path = shutil.which(command)
    if path is None:
        reason = f"{command} is not installed (Debian package {package}: apt-get install -y {package})"
        if os.environ.get("REQUIRE_TEST_TOOLS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path
