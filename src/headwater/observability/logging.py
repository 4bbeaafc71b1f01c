"""Structured JSON-lines logs through structlog, configured per app (no global config)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


def make_logger(level: str = "info", stream: TextIO | None = None) -> Any:
    """A bound JSON logger writing one line per event to ``stream`` (stdout by default)."""
    return structlog.wrap_logger(
        structlog.WriteLogger(stream or sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level.lower(),
                                                                       logging.INFO)),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        cache_logger_on_first_use=True,
    ).bind(logger="headwater")
