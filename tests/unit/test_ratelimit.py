"""The login limiter: a sliding window per key whose memory is bounded by keys and by hits,
and which nobody can reset for themselves by spraying new keys. The clock is a fake one."""

from __future__ import annotations

from eventscope.web.ratelimit import SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_blocked_at_the_limit_and_free_once_the_window_passed() -> None:
    clock = Clock()
    window = SlidingWindow(3, window=60, clock=clock)
    for _ in range(2):
        window.hit("a")
    assert not window.blocked("a")
    window.hit("a")
    assert window.blocked("a")
    assert not window.blocked("b")
    clock.now += 61
    assert not window.blocked("a")


def test_hits_held_per_key_are_bounded_by_the_limit() -> None:
    window = SlidingWindow(3, clock=Clock())
    for _ in range(100_000):
        window.hit("flood")
    assert window.held == 3
    assert window.blocked("flood")


def test_keys_held_are_bounded() -> None:
    window = SlidingWindow(3, max_keys=1000, clock=Clock())
    for n in range(50_000):
        window.hit(f"10.0.{n // 256}.{n % 256}")
    assert len(window) == 1000
    assert window.held <= 1000 * 3


def test_spraying_new_keys_does_not_reset_a_blocked_clients_count() -> None:
    clock = Clock()
    window = SlidingWindow(3, max_keys=100, clock=clock)
    for _ in range(3):
        window.hit("attacker")
    clock.now += 1
    for n in range(10_000):  # a spray of new addresses, after the attacker's own hits
        window.hit(f"spray-{n}")
    assert window.blocked("attacker")
    assert len(window) == 100


def test_expired_keys_are_forgotten_before_anyone_is_evicted() -> None:
    clock = Clock()
    window = SlidingWindow(3, max_keys=10, clock=clock)
    for n in range(10):
        window.hit(f"old-{n}")
    clock.now += 61
    window.hit("new")
    assert len(window) == 1
