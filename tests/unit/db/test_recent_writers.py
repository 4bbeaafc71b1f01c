"""Who wrote within the read-your-writes window: one process's memory, and a server's
(a memory-mapped table its workers share)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from headwater.db import recent_writers
from headwater.db.recent_writers import RecentWriters, SharedRecentWriters

SECOND = 10**9


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000 * SECOND
        monkeypatch.setattr(recent_writers, "monotonic_ns", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def test_a_process_remembers_for_the_window(clock: Clock) -> None:
    w = RecentWriters(2.0)
    assert not w.recent("alice")
    w.wrote("alice")
    assert w.recent("alice") and not w.recent("bob")
    clock.advance(1.999)
    assert w.recent("alice")
    clock.advance(0.001)
    assert not w.recent("alice")
    w.wrote("bob")  # and forgets the windows that closed
    assert list(w._until) == ["bob"]


def test_instances_on_one_file_share_the_window(tmp_path: Path, clock: Clock) -> None:
    a = SharedRecentWriters(str(tmp_path), 2.0)
    b = SharedRecentWriters(str(tmp_path), 2.0)  # another worker
    assert not b.recent("alice")
    a.wrote("alice")
    assert b.recent("alice") and a.recent("alice")
    assert not b.recent("bob")
    clock.advance(1.5)
    b.wrote("alice")  # a later write extends the window from now
    clock.advance(1.5)
    assert a.recent("alice")
    clock.advance(0.5)
    assert not a.recent("alice") and not b.recent("alice")
    a.close()
    b.close()


def _worker(directory: str, who: str, conn: Connection) -> None:
    w = SharedRecentWriters(directory, 60.0)
    conn.send("ready")
    while (asked := conn.recv()) is not None:
        if asked == "write":
            w.wrote(who)
            conn.send("wrote")
        else:
            conn.send(w.recent(asked))
    w.close()


def test_a_write_in_one_process_is_recent_in_another(tmp_path: Path) -> None:
    """Two processes on the real clock (CLOCK_MONOTONIC is the machine's)."""
    ctx = multiprocessing.get_context("spawn")
    ends = [ctx.Pipe() for _ in range(2)]
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), "alice", child))
             for _, child in ends]
    for p in procs:
        p.start()
    try:
        (writer, _), (reader, _) = ends
        assert writer.recv() == reader.recv() == "ready"
        reader.send("alice")
        assert reader.recv() is False
        writer.send("write")
        assert writer.recv() == "wrote"
        reader.send("alice")
        assert reader.recv() is True
        reader.send("bob")
        assert reader.recv() is False
        assert SharedRecentWriters(str(tmp_path), 60.0).recent("alice")  # and in this one
    finally:
        for conn, _ in ends:
            conn.send(None)
        for p in procs:
            p.join(30)
            assert p.exitcode == 0


def test_more_writers_than_slots_forget_no_window(tmp_path: Path, clock: Clock,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Four slots, ten writers: every window stays open to its end; sharing a slot only
    keeps another principal on the primary for as long."""
    monkeypatch.setattr(recent_writers, "SLOTS", 4)
    w = SharedRecentWriters(str(tmp_path), 2.0)
    for i in range(10):
        w.wrote(f"p{i}")
        clock.advance(0.1)
    assert all(w.recent(f"p{i}") for i in range(10))
    assert w.recent("nobody")  # shares a slot with a writer: the primary answers it
    clock.advance(1.05)
    assert w.recent("p9")  # p0's own window is over; its slot's may not be
    clock.advance(1.0)
    assert not any(w.recent(f"p{i}") for i in range(10)) and not w.recent("nobody")


def test_windows_from_another_clock_are_over(tmp_path: Path, clock: Clock) -> None:
    """A file that outlived a reboot holds window ends far past this clock's now."""
    before = SharedRecentWriters(str(tmp_path), 2.0)
    before.wrote("alice")
    clock.now = 5 * SECOND  # the machine rebooted: its monotonic clock starts again
    assert before.recent("alice")  # the stale window still reads as open...
    after = SharedRecentWriters(str(tmp_path), 2.0)  # ...until the server starts again
    assert not after.recent("alice") and not before.recent("alice")
    after.wrote("bob")
    assert before.recent("bob")
