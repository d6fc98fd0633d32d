"""Waking long-polls and live log streams when a build changes, across the executor's thread and the event
loop. Subscribe before reading the state you wait on, so a change between the read and the wait is not
missed; a waiter still re-reads the database on its poll interval, so nothing depends on a wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterator

__all__ = ["Notifier", "Subscription"]


class Subscription:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def _set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if the build changed since the last wait, else False after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, build_id: str) -> None:
        """Thread-safe: wake everyone subscribed to `build_id`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            subscriptions = list(self._subscriptions.get(build_id, ()))
        for subscription in subscriptions:
            loop.call_soon_threadsafe(subscription._set)

    @contextlib.contextmanager
    def subscribe(self, build_id: str) -> Iterator[Subscription]:
        subscription = Subscription()
        with self._lock:
            self._subscriptions[build_id].add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                waiting = self._subscriptions.get(build_id)
                if waiting is not None:
                    waiting.discard(subscription)
                    if not waiting:
                        del self._subscriptions[build_id]
