"""One log stream: library lines in Headwater's JSON format, retries folded per episode."""

from __future__ import annotations

import io
import json
import logging

from stamina.instrumentation import RetryDetails

from headwater.observability.logging import RetryEpisodes, make_logger, route_library_logs


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_library_lines_are_json_like_ours() -> None:
    out = io.StringIO()
    log = route_library_logs("info", out)
    try:
        log.info("ours", n=1)
        logging.getLogger("uvicorn.error").warning("Started server process [%d]", 42)
        logging.getLogger("asyncpg.pool").debug("below the level: not written")
        got = lines(out)
        assert [g["event"] for g in got] == ["ours", "Started server process [42]"]
        assert got[1]["logger"] == "uvicorn.error" and got[1]["level"] == "warning"
        assert all("timestamp" in g for g in got)
        route_library_logs("info", out)  # a second app in the process: still one handler
        logging.getLogger("x").warning("once")
        assert [g["event"] for g in lines(out)].count("once") == 1
    finally:
        for h in [h for h in logging.getLogger().handlers if h.get_name() == "headwater"]:
            logging.getLogger().removeHandler(h)


def test_retries_fold_into_a_line_per_episode_and_decade() -> None:
    out = io.StringIO()
    hook = RetryEpisodes(make_logger("info", out))
    for n in range(1, 251):
        hook(RetryDetails(name="relay.publish", args=(), kwargs={}, retry_num=n, wait_for=0.1,
                          waited_so_far=n * 0.1, caused_by=ConnectionError("refused")))
    got = lines(out)
    assert [(g["event"], g.get("retries")) for g in got] == [
        ("retrying", None), ("still_retrying", 10), ("still_retrying", 100)]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_readable_on_a_terminal_and_json_elsewhere() -> None:
    from headwater.observability.access import AccessLog
    from headwater.observability.logging import is_console

    assert is_console("auto", _Terminal()) and not is_console("auto", io.StringIO())
    assert is_console("console", io.StringIO()) and not is_console("json", _Terminal())
    tty = _Terminal()
    make_logger("info", tty, "auto").info("catalog_loaded", tables=3)
    text = tty.getvalue()
    assert "catalog_loaded" in text and "tables" in text and not text.startswith("{")
    piped = io.StringIO()
    make_logger("info", piped, "auto").info("catalog_loaded", tables=3)
    assert lines(piped)[0]["tables"] == 3
    out = io.StringIO()
    access = AccessLog(out, console=True)
    access.write("r1", "GET", "/orders", "limit=1", 200, 0.0042, 1)
    assert "GET /orders?limit=1 200 4.2 ms rows=1" in out.getvalue()
