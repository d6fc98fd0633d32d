"""Per-process counters of one GOCACHEPROG session, appended as one JSON line to a stats file on close.

Enabled by `--stats PATH` or the environment variable GOCAAS_CACHEPROG_STATS=PATH (the go command passes
its environment to the program). Each line is written with a single O_APPEND write, so many processes can
share one file. Fields: `pid`, `dir`, `namespace`, `read_only`, `refill` (every get answered with a miss),
`started` (unix seconds), `duration_s`, `gets`, `hits`, `misses`, `hit_bytes`, `puts`, `put_bytes`,
`put_new_bytes` (bytes of objects not already in the store), `errors`, `corrupt` (hits refused for a bad
object or entry; counted inside misses).
With --remote, also the remote tier's counters (REMOTE_COUNTERS): `remote_hits` (gets that missed the
local store and were served by the remote; inside `hits`, so local hits are hits - remote_hits),
`remote_misses`, `remote_skipped` (not asked: circuit open), `remote_bytes_down`, `uploads`,
`upload_skipped` (the remote had the object), `upload_dropped`, `remote_bytes_up`, `remote_errors`,
`remote_requests` (HTTP requests sent), `breaker_opens`, and the prefetch's (prefetch.py): `prefetch_hits`
(remote hits that waited for a prefetch stream to bring their object in; a get whose object a prefetch had
already written counts as a local hit), `prefetched` and `prefetch_bytes` (objects and bytes it
wrote; in `remote_bytes_down`), `traces_sent` (1 when this session's trace was uploaded); with a verify key,
`remote_unsigned` (remote entries refused for want of a signature) and `remote_bad_signatures`.

Lean on purpose (no json import): the program's start-up time counts on every go command.
"""

from __future__ import annotations

import os
import time

STATS_ENV = "GOCAAS_CACHEPROG_STATS"

COUNTERS = ("gets", "hits", "misses", "hit_bytes", "puts", "put_bytes", "put_new_bytes", "errors", "corrupt")
REMOTE_COUNTERS = (
    "remote_hits", "remote_misses", "remote_skipped", "remote_bytes_down", "uploads", "upload_skipped",
    "upload_dropped", "remote_bytes_up", "remote_errors", "remote_requests", "breaker_opens", "prefetch_hits",
    "prefetched", "prefetch_bytes", "traces_sent", "remote_unsigned", "remote_bad_signatures",
)  # fmt: skip


class Stats:
    """Counters; callers update them under the server's output lock, so plain ints are enough."""

    __slots__ = (
        "corrupt",
        "errors",
        "gets",
        "hit_bytes",
        "hits",
        "misses",
        "put_bytes",
        "put_new_bytes",
        "puts",
        "remote",
        "started",
    )  # fmt: skip

    def __init__(self) -> None:
        self.started = time.time()
        self.remote: dict[str, int] | None = None  # the remote tier's counters, with --remote
        for name in COUNTERS:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def line(self, **extra: str | int | float | bool) -> bytes:
        fields: dict[str, str | int | float | bool] = {
            "pid": os.getpid(),
            **extra,
            "started": round(self.started, 3),
            "duration_s": round(time.time() - self.started, 4),
            **self.as_dict(),
            **(self.remote or {}),
        }
        return (
            "{" + ", ".join(f"{_json_str(k)}: {_json_value(v)}" for k, v in fields.items()) + "}\n"
        ).encode()

    def append_to(self, path: str, **extra: str | int | float | bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, self.line(**extra))
        finally:
            os.close(fd)


def _json_str(s: str) -> str:
    try:
        from _json import encode_basestring_ascii
    except ImportError:  # pragma: no cover - CPython always has _json
        from json import dumps as encode_basestring_ascii
    return encode_basestring_ascii(s)


def _json_value(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _json_str(v)
    return repr(v)
