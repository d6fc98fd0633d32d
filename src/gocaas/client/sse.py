"""Following a build's log: the server's Server-Sent Events (`event: log` with an id per chunk, then one
`event: end`), parsed in a few lines rather than with a dependency, resumed with Last-Event-ID when the
connection drops."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from gocaas.client.models import LogEnd
from gocaas.errors import InfraError, TransientError

if TYPE_CHECKING:
    from gocaas.client.api import GocaasClient

__all__ = ["LogStream", "ServerEvent", "parse_events"]


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: str
    id: str | None


def parse_events(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Events from the lines of a text/event-stream body (the WHATWG rules this server needs)."""
    event, ident = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data or event != "message":
                yield ServerEvent(event, "\n".join(data), ident)
            event, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ident = value


class LogStream:
    """Iterate for the log's text chunks as they come; afterwards `end` holds the build's final status.
    `last_id` is the last chunk received: a reconnect asks the server for what follows it."""

    def __init__(
        self, client: GocaasClient, path: str, *, idle_timeout: float, last_id: str | None = None
    ) -> None:
        self._client = client
        self._path = path
        self._timeout = httpx.Timeout(client.timeout, read=idle_timeout)
        self.end: LogEnd | None = None
        self.last_id = last_id

    def __iter__(self) -> Iterator[str]:
        failures = 0
        while self.end is None:
            try:
                for text in self._connect():
                    failures = 0
                    yield text
                if self.end is None:
                    raise TransientError("the log stream ended before the build did", kind="network")
            except TransientError as e:
                if isinstance(e.__cause__, httpx.ReadTimeout):
                    continue  # a quiet build: nothing was written for a while; ask again
                failures += 1
                if failures >= self._client.attempts:
                    raise
                asked = getattr(e, "retry_after", None)
                time.sleep(min(asked or self._client.backoff * 2 ** (failures - 1), self._client.max_wait))

    def _connect(self) -> Iterator[str]:
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        with self._client.stream("GET", self._path, headers=headers, timeout=self._timeout) as response:
            for event in parse_events(response.iter_lines()):
                if event.event == "log":
                    if event.id is not None:
                        self.last_id = event.id
                    yield event.data + "\n"
                elif event.event == "end":
                    self.end = _end(event.data)
                    return


def _end(data: str) -> LogEnd:
    try:
        fields = json.loads(data)
        return LogEnd(status=str(fields["status"]), exit_code=fields.get("exit_code"))
    except (ValueError, KeyError, TypeError) as e:
        raise InfraError(f"the server ended the log with an unreadable event: {data[:200]!r}") from e
