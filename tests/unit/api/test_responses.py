"""A read's ``Content-Range`` and status: 200 for the whole result (or an unknown total), 206 for
part of it, 416 for an offset past the end; first the pure functions, then the same through the
responses built from them."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from headwater.api.responses import (
    Negotiation,
    body_response,
    content_range,
    error_response,
    range_status,
    read_response,
    write_response,
)
from headwater.cache.keys import etag
from headwater.errors import InvalidRange
from headwater.model.result import ReadAnswer, RowStream, WriteResult

RANGE = re.compile(r"^(?:\*|(\d+)-(\d+))/(\*|\d+)$")
counts = st.integers(0, 10 ** 12)


def parse(header: str) -> tuple[int | None, int | None, int | None]:
    """``Content-Range`` → (first, last, total), ``None`` for a ``*``."""
    m = RANGE.match(header)
    assert m is not None, header
    first, last, total = m.groups()
    return (None if first is None else int(first), None if last is None else int(last),
            None if total == "*" else int(total))


def status(first: int, rows: int, total: int | None) -> int:
    try:
        return range_status(first, rows, total)
    except InvalidRange as exc:
        return exc.status


def check(first: int, rows: int, total: int | None) -> None:
    """Every rule for one page: ``rows`` rows from offset ``first`` of ``total`` (if known)."""
    got_first, last, got_total = parse(content_range(first, rows, total))
    assert got_total == total
    if rows == 0:
        assert (got_first, last) == (None, None)  # "*/total": no rows, no range
    else:
        assert (got_first, last) == (first, first + rows - 1)
    code = status(first, rows, total)
    if total is None:
        assert code == 200  # nothing to compare the page with
    elif first > total:
        assert code == 416
    elif first + rows <= total:  # a page the database can return
        whole = first == 0 and rows == total
        assert code == (200 if whole else 206)


def test_every_small_page() -> None:
    for total in (None, *range(9)):
        for first in range(12):
            for rows in range(12):
                check(first, rows, total)


@given(counts, counts, st.one_of(st.none(), counts))
def test_any_page(first: int, rows: int, total: int | None) -> None:
    check(first, rows, total)


@given(counts, counts)
def test_a_page_of_a_known_total(first: int, rows: int) -> None:
    total = first + rows  # the page runs to the end
    last = first + rows - 1
    assert content_range(first, rows, total) == (f"{first}-{last}/{total}" if rows
                                                 else f"*/{total}")
    assert range_status(first, rows, total) == (200 if first == 0 else 206)
    if rows:
        # a page that stops short of the end is partial whatever its start
        assert range_status(first, rows - 1, total) == 206


@given(counts)
def test_empty_results(first: int) -> None:
    assert content_range(first, 0, None) == "*/*"
    assert range_status(first, 0, None) == 200
    assert content_range(0, 0, 0) == "*/0"
    assert range_status(0, 0, 0) == 200  # nothing, and all of it
    assume(first > 0)
    # an offset exactly at the end is an empty page of a larger result
    assert content_range(first, 0, first) == f"*/{first}"
    assert range_status(first, 0, first) == 206


@given(counts, st.integers(1, 10 ** 6), counts)
def test_offset_past_the_end_is_416(total: int, past: int, rows: int) -> None:
    first = total + past
    with pytest.raises(InvalidRange) as info:
        range_status(first, rows, total)
    assert info.value.status == 416 and info.value.code == "PGRST103"
    assert f"offset of {first}" in info.value.details and f"only {total} rows" in \
        info.value.details
    # an unknown total cannot be overrun
    assert range_status(first, rows, None) == 200


def test_416_as_a_response() -> None:
    with pytest.raises(InvalidRange) as info:
        range_status(7, 0, 3)
    response = error_response(info.value)
    assert response.status_code == 416
    assert json.loads(bytes(response.body)) == {
        "code": "PGRST103", "message": "Requested range not satisfiable",
        "details": "An offset of 7 was requested, but there are only 3 rows.", "hint": None}


# --- through the responses --------------------------------------------------------------------


def body(rows: int) -> bytes:
    return ("[" + ",".join(["{}"] * rows) + "]").encode()


@given(st.integers(0, 50), st.integers(0, 50), st.one_of(st.none(), st.integers(0, 100)))
def test_body_response_carries_the_range(first: int, rows: int, total: int | None) -> None:
    def respond() -> int:
        r = body_response(body(rows), media="json", rows=rows, total=total, first=first,
                          tag='"t"', ask=Negotiation(), compressor=None)
        assert r.headers["content-range"] == content_range(first, rows, total)
        assert r.body == body(rows)
        return r.status_code

    if total is not None and first > total:
        with pytest.raises(InvalidRange):
            respond()
    else:
        assert respond() == range_status(first, rows, total)


def test_head_and_not_modified_keep_the_range() -> None:
    head = body_response(body(2), media="json", rows=2, total=5, first=3, tag='"t"',
                         ask=Negotiation(head=True), compressor=None)
    assert (head.status_code, head.headers["content-range"], head.body) == (206, "3-4/5", b"")
    same = body_response(body(2), media="json", rows=2, total=5, first=3, tag='"t"',
                         ask=Negotiation(if_none_match='"t"'), compressor=None)
    assert (same.status_code, same.headers["content-range"]) == (304, "3-4/5")
    # past the end is refused before the ETag is looked at
    with pytest.raises(InvalidRange):
        body_response(b"[]", media="json", rows=0, total=5, first=6, tag='"t"',
                      ask=Negotiation(if_none_match='"t"'), compressor=None)


@pytest.mark.parametrize(("first", "rows", "total", "code", "header"), [
    (0, 3, None, 200, "0-2/*"),
    (0, 3, 3, 200, "0-2/3"),
    (2, 3, 10, 206, "2-4/10"),
    (0, 0, 0, 200, "*/0"),
    (10, 0, 10, 206, "*/10"),
    (0, 0, None, 200, "*/*"),
])
async def test_read_response_finished_or_streamed(first: int, rows: int, total: int | None,
                                                  code: int, header: str) -> None:
    b = body(rows)
    finished = read_response(ReadAnswer("json", rows, total, first, body=b, etag=etag(b)),
                             ask=Negotiation(), compressor=None)
    assert (finished.status_code, finished.headers["content-range"]) == (code, header)

    async def chunks() -> AsyncIterator[bytes]:
        yield body(rows)

    for ask in (Negotiation(), Negotiation(head=True)):
        stream = RowStream(chunks(), contextlib.AsyncExitStack())
        streamed = read_response(ReadAnswer("json", rows, total, first, stream=stream,
                                            x_cache="MISS"), ask=ask, compressor=None)
        assert (streamed.status_code, streamed.headers["content-range"]) == (code, header)
        assert streamed.headers["x-cache"] == "MISS"
        await stream.aclose()


async def test_streamed_read_past_the_end_is_416() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"[]"

    stream = RowStream(chunks(), contextlib.AsyncExitStack())
    with pytest.raises(InvalidRange):
        read_response(ReadAnswer("json", 0, 4, 5, stream=stream), ask=Negotiation(),
                      compressor=None)
    await stream.aclose()


@pytest.mark.parametrize(("method", "affected", "returning", "code", "header"), [
    ("POST", 2, None, 201, "*/*"),
    ("POST", 2, "representation", 201, "*/*"),
    ("PATCH", 3, None, 204, "0-2/*"),
    ("PATCH", 0, None, 204, "*/*"),
    ("DELETE", 1, "representation", 200, "*/*"),
])
def test_write_response_range(method: str, affected: int, returning: str | None, code: int,
                              header: str) -> None:
    result = WriteResult(rows=[{"id": i} for i in range(affected)], body=b"[]")
    r = write_response(result, method=method, returning=returning, applied=[])
    assert (r.status_code, r.headers["content-range"]) == (code, header)


@pytest.mark.parametrize(("method", "affected", "header"), [
    ("POST", 3, "*/3"), ("PATCH", 3, "0-2/3"), ("PATCH", 0, "*/0"), ("DELETE", 3, "*/3"),
    ("DELETE", 0, "*/0"),
])
def test_write_response_counts(method: str, affected: int, header: str) -> None:
    """``Prefer: count=exact`` on a write: PostgREST's ``Content-Range`` for each verb."""
    result = WriteResult(rows=[{"id": i} for i in range(affected)])
    r = write_response(result, method=method, returning=None, applied=[], count=True)
    assert r.headers["content-range"] == header


@pytest.mark.parametrize(("method", "inserted", "returning", "code"), [
    ("POST", None, None, 201), ("POST", 0, None, 200), ("POST", 1, None, 201),
    ("POST", 0, "representation", 200), ("PUT", 0, "representation", 200),
    ("PUT", 1, "representation", 201), ("PUT", 1, None, 204),
])
def test_upsert_status(method: str, inserted: int | None, returning: str | None,
                       code: int) -> None:
    result = WriteResult(rows=[{"id": 1}], body=b'[{"id":1}]', inserted=inserted)
    r = write_response(result, method=method, returning=returning, applied=[])
    assert r.status_code == code
    assert ("content-range" in r.headers) == (method != "PUT")


def test_object_representation_is_one_object() -> None:
    result = WriteResult(rows=[{"id": 1}], body=b'[{"id":1}]')
    r = write_response(result, method="PATCH", returning="representation", applied=[],
                       media="object")
    assert (r.body, r.headers["content-type"]) == (
        b'{"id":1}', "application/vnd.pgrst.object+json; charset=utf-8")
