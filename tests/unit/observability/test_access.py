"""The access log: the same JSON line as before, written in batches."""

from __future__ import annotations

import asyncio
import io
import json

from headwater.observability.access import AccessLog


async def test_lines_are_batched_and_keep_their_format() -> None:
    out = io.StringIO()
    log = AccessLog(out, interval=0.01)
    log.write("r1", "GET", "/orders", "id=eq.1", 200, 0.0012344, 1)
    log.write("r2", "POST", "/orders", "", 201, 0.002, None)
    assert out.getvalue() == ""  # not yet: one write per batch
    await asyncio.sleep(0.05)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["request_id"], x["status"], x["rows"]) for x in lines] == [
        ("r1", 200, 1), ("r2", 201, None)]
    first = lines[0]
    assert first["duration_ms"] == 1.234 and first["event"] == "access"
    assert first["level"] == "info" and first["logger"] == "headwater"
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]


def test_a_full_buffer_is_written_at_once_and_without_a_loop() -> None:
    out = io.StringIO()
    log = AccessLog(out, max_lines=3)
    for i in range(3):
        log.write(f"r{i}", "GET", "/p", "x" * 1000, 200, 0.001, 0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all(len(json.loads(line)["query"]) == 500 for line in lines)  # bounded


def test_a_text_stream_with_a_buffer_gets_bytes_in_order_and_escaped() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    log = AccessLog(out)
    out.write('{"event": "before"}\n')  # another logger's line, still in the text layer
    log.write('a"b', "GET", '/p"\\\n\u00e9', 'q="x"', 404, 0.0, None)
    log.flush()
    first, second = raw.getvalue().decode().splitlines()
    assert json.loads(first) == {"event": "before"}
    line = json.loads(second)
    assert list(line) == ["logger", "request_id", "method", "path", "query", "status",
                          "duration_ms", "rows", "event", "level", "timestamp"]
    assert (line["request_id"], line["path"], line["query"]) == ('a"b', '/p"\\\n\u00e9',
                                                                 'q="x"')
    assert len(line["timestamp"]) == len("2026-01-01T00:00:00.000000Z")
