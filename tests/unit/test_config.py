"""Settings: values derived from them."""

from __future__ import annotations

from headwater.config import Settings


def test_retry_delays_double_up_to_the_cap() -> None:
    s = Settings(worker_max_attempts=6, worker_retry_delay=0.5, worker_retry_max_delay=3)
    assert s.retry_delays() == (0.5, 1.0, 2.0, 3.0, 3.0)
    assert Settings(worker_max_attempts=1).retry_delays() == ()
    assert Settings.from_env({"HEADWATER_WORKER_MAX_ATTEMPTS": "3"}).worker_max_attempts == 3
