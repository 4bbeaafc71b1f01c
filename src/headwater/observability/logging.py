"""Structured logs through structlog, configured per app (no global config): JSON lines for
machines, or structlog's console rendering for a person at a terminal (``log_format``)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import stamina.instrumentation
import structlog
from stamina.instrumentation import RetryDetails

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


def is_console(fmt: str, stream: TextIO) -> bool:
    """``auto``: human-readable when a person reads the stream (a terminal), JSON when it
    goes to a file, a pipe or a log collector."""
    if fmt == "auto":
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False
    return fmt == "console"


def _renderer(console: bool) -> Any:
    return structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()


def make_logger(level: str = "info", stream: TextIO | None = None, fmt: str = "json") -> Any:
    """A bound logger writing one line per event to ``stream`` (stdout by default), in
    ``fmt`` (json, console, or auto: console on a terminal)."""
    out = stream or sys.stdout
    return structlog.wrap_logger(
        structlog.WriteLogger(out),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level.lower(),
                                                                       logging.INFO)),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _renderer(is_console(fmt, out)),
        ],
        cache_logger_on_first_use=True,
    ).bind(logger="headwater")


_HANDLER = "headwater"


class RetryEpisodes:
    """stamina's retries as our log lines, folded: one line when an episode of retries of a
    call begins, then one at the 10th, 100th, … retry with the count so far, instead of one
    line per attempt (a dependency down for a minute would otherwise write hundreds)."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def __call__(self, details: RetryDetails) -> None:
        n = details.retry_num
        if n == 1:
            self.log.warning("retrying", call=details.name, cause=repr(details.caused_by)[:200],
                             wait_s=round(details.wait_for, 3))
        elif n >= 10 and str(n).rstrip("0") == "1":
            self.log.warning("still_retrying", call=details.name, retries=n,
                             waited_s=round(details.waited_so_far, 3),
                             cause=repr(details.caused_by)[:200])


def route_library_logs(level: str = "info", stream: TextIO | None = None,
                       fmt: str = "json") -> Any:
    """Every line this process writes in one format: the standard library's loggers
    (uvicorn, asyncpg, aio-pika, redis) and stamina's retries go through the same JSON
    rendering as Headwater's own. Logging handlers are per process by nature: the
    composition root calls this once, before serving. Returns Headwater's logger."""
    out = stream or sys.stdout
    console = is_console(fmt, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _renderer(console)]))
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    # Replace our own handler if a previous app in this process installed one; leave any
    # other (a test runner's capture) in place.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    log = make_logger(level, out, "console" if console else "json")
    stamina.instrumentation.set_on_retry_hooks([RetryEpisodes(log)])
    return log
