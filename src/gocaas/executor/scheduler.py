"""Which queued build runs next: highest priority first, with aging so that a low-priority build is never
starved, and first come first served among equals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gocaas.store.builds import QueuedBuild

__all__ = ["MAX_PRIORITY", "effective_priority", "order", "position"]

MAX_PRIORITY = 9
"""Priorities run from 0 (lowest) to 9 (highest); requests default to 5."""


def effective_priority(build: QueuedBuild, now: datetime, aging_seconds: float) -> float:
    """The priority plus one level for every `aging_seconds` waited: a priority-0 build waiting
    9 × aging_seconds outranks a fresh priority-9 one."""
    waited = max(0.0, (now - build.queued_at).total_seconds())
    return build.priority + waited / aging_seconds


def order(queued: Sequence[QueuedBuild], now: datetime, aging_seconds: float) -> list[QueuedBuild]:
    """The queue in the order builds will be started."""
    return sorted(queued, key=lambda b: (-effective_priority(b, now, aging_seconds), b.queued_at, b.id))


def position(build_id: str, queued: Sequence[QueuedBuild], now: datetime, aging_seconds: float) -> int | None:
    """1 for the next build to start; None if it is not queued."""
    for index, build in enumerate(order(queued, now, aging_seconds), start=1):
        if build.id == build_id:
            return index
    return None
