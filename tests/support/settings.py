"""Settings as the program loads them, with the shipped jobs."""

from __future__ import annotations

from functools import partial

from jobs import REGISTRY
from maintainer import settings

load_settings = partial(settings.load_settings, REGISTRY)
