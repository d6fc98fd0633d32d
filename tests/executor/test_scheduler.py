"""The scheduler's order: priority first, aging so nothing starves, first come first served among equals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gocaas.executor.scheduler import MAX_PRIORITY, effective_priority, order, position
from gocaas.store.builds import QueuedBuild

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AGING = 30.0


def build(build_id: str, priority: int, waited_s: float = 0.0) -> QueuedBuild:
    return QueuedBuild(build_id, 1, priority, NOW - timedelta(seconds=waited_s))


def ids(builds: list[QueuedBuild]) -> list[str]:
    return [b.id for b in builds]


def test_higher_priority_first() -> None:
    queue = [build("low", 0), build("high", 9), build("mid", 5), build("default", 5, waited_s=1)]
    assert ids(order(queue, NOW, AGING)) == ["high", "default", "mid", "low"]
    assert MAX_PRIORITY == 9


def test_first_come_first_served_among_equals() -> None:
    # Submitted a second apart, listed in no particular order (the database gives no order).
    queue = [build(f"b{n}", 5, waited_s=100 - n) for n in (3, 0, 4, 1, 2)]
    assert ids(order(queue, NOW, AGING)) == ["b0", "b1", "b2", "b3", "b4"]
    # The same with aging so slow it cannot matter, and with equal times (then by id: stable).
    assert ids(order(queue, NOW, 1e12)) == ["b0", "b1", "b2", "b3", "b4"]
    same_time = [build(i, 5) for i in ("c", "a", "b")]
    assert ids(order(same_time, NOW, AGING)) == ["a", "b", "c"]


def test_a_little_waiting_does_not_beat_a_higher_priority() -> None:
    queue = [build("old-4", 4, waited_s=AGING * 0.9), build("new-5", 5)]
    assert ids(order(queue, NOW, AGING)) == ["new-5", "old-4"]


@pytest.mark.parametrize("aging", [1.0, 30.0, 600.0])
def test_aging_lets_an_old_low_priority_build_overtake(aging: float) -> None:
    fresh = build("new-9", 9)
    almost = build("old-0", 0, waited_s=9 * aging - 1)
    assert ids(order([fresh, almost], NOW, aging)) == ["new-9", "old-0"]
    aged = build("old-0", 0, waited_s=9 * aging)
    assert ids(order([fresh, aged], NOW, aging)) == ["old-0", "new-9"]
    longer = build("old-0", 0, waited_s=10 * aging)
    assert ids(order([fresh, longer], NOW, aging)) == ["old-0", "new-9"]


def test_one_level_per_aging_period() -> None:
    assert effective_priority(build("x", 3), NOW, AGING) == 3
    assert effective_priority(build("x", 3, waited_s=AGING), NOW, AGING) == pytest.approx(4)
    assert effective_priority(build("x", 3, waited_s=5 * AGING), NOW, AGING) == pytest.approx(8)
    # A clock that went backwards (queued "in the future") never lowers a priority.
    assert effective_priority(build("x", 3, waited_s=-AGING), NOW, AGING) == 3


def test_a_priority_5_build_waiting_2_periods_passes_a_fresh_6() -> None:
    queue = [build("fresh-6", 6), build("aged-5", 5, waited_s=2 * AGING), build("fresh-7", 7)]
    assert ids(order(queue, NOW, AGING)) == ["aged-5", "fresh-7", "fresh-6"]


def test_position() -> None:
    queue = [build("low", 1, waited_s=5), build("high", 8), build("mid", 5, waited_s=1), build("mid2", 5)]
    assert position("high", queue, NOW, AGING) == 1
    assert position("mid", queue, NOW, AGING) == 2
    assert position("mid2", queue, NOW, AGING) == 3
    assert position("low", queue, NOW, AGING) == 4
    assert position("gone", queue, NOW, AGING) is None
    assert position("high", [], NOW, AGING) is None
    assert [position(b.id, queue, NOW, AGING) for b in order(queue, NOW, AGING)] == [1, 2, 3, 4]
    # A fresh priority-9 build goes to the front of a young queue, but waits behind builds that have
    # aged past it: after 8 periods even the priority-1 build outranks it.
    urgent_now = [*queue, QueuedBuild("urgent", 2, 9, NOW)]
    assert position("urgent", urgent_now, NOW, AGING) == 1
    assert position("low", urgent_now, NOW, AGING) == 5
    later = NOW + timedelta(seconds=8 * AGING)
    urgent_later = [*queue, QueuedBuild("urgent", 2, 9, later)]
    assert position("urgent", urgent_later, later, AGING) == 5
    assert position("low", urgent_later, later, AGING) == 4
