"""A small client of `gocaas serve` over httpx.

Every failure comes out as a gocaas error: `BadInput` when the server refused the request (4xx, with the
server's own message), `TransientError` when it could not be reached or was busy (connection errors,
timeouts, 502/503/504 — retried a few times first, honouring Retry-After), `InfraError` for another 5xx or a
download whose sha256 does not match. Submissions carry an Idempotency-Key, so a retried POST never makes
a second build.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from gocaas import __version__
from gocaas.client.models import Artifact, Build, BuildOptions, Submitted
from gocaas.client.sse import LogStream
from gocaas.errors import BadInput, InfraError, TransientError

__all__ = ["GocaasClient", "ServerBusy"]


def _redact(url: str) -> str:
    """The URL to show in messages: a password in it becomes ***."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not (sep and at and ":" in userinfo) or "/" in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


T = TypeVar("T")
M = TypeVar("M")
_CHUNK = 1 << 20


class ServerBusy(TransientError):
    """The server answered 502/503/504: try again, after `retry_after` seconds when it said so."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, kind="server_busy")
        self.retry_after = retry_after


class GocaasClient:
    """`url` is the server's http(s)://HOST[:PORT]; `timeout` bounds connecting and each read or write.
    `attempts` is how often a transient failure is tried in all, waiting `backoff`·2ⁿ seconds (at most
    `max_wait`, or what Retry-After asks, capped the same) between tries."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 30.0,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
    ) -> None:
        try:
            parts = urlsplit(url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # "http://[::1", a port past 65535
            usable = False
        shown = _redact(url)
        if not usable:
            raise BadInput(f"the server URL must be http(s)://HOST[:PORT], got {shown!r}", kind="bad_url")
        if not token or not token.isprintable() or not token.isascii() or " " in token:
            raise BadInput("token: empty or has characters a bearer token cannot hold", kind="bad_token")
        self.url, self.shown_url = url.rstrip("/"), shown.rstrip("/")
        self.timeout = timeout
        self.attempts, self.backoff, self.max_wait = max(attempts, 1), backoff, max_wait
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"gocaas/{__version__}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GocaasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- builds ----------------------------------------------------------------------------------------
    def submit_archive(
        self, archive: bytes | Path, options: BuildOptions, *, idempotency_key: str | None = None
    ) -> Submitted:
        """Upload a module archive (.tar.gz or .zip: its bytes, or a file) with the build's options."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        spec = json.dumps(options.to_json())

        def send() -> httpx.Response:
            if isinstance(archive, Path):
                with archive.open("rb") as handle:
                    files = {"archive": (archive.name, handle, "application/octet-stream")}
                    return self.http.post("/v1/builds", files=files, data={"spec": spec}, headers=headers)
            files = {"archive": ("source.tar.gz", archive, "application/octet-stream")}
            return self.http.post("/v1/builds", files=files, data={"spec": spec}, headers=headers)

        return _parse(Submitted, self._call(send))

    def submit_git(
        self, url: str, ref: str | None, options: BuildOptions, *, idempotency_key: str | None = None
    ) -> Submitted:
        """Build a git repository the server fetches itself (`ref`: branch, tag or commit; None: HEAD)."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        body = {"source": {"git_url": url, "ref": ref}} | options.to_json()
        return _parse(Submitted, self._call(lambda: self.http.post("/v1/builds", json=body, headers=headers)))

    def get(self, build_id: str, wait: float = 0) -> Build:
        """The build now; with `wait`, the server answers as soon as its status, stage or attempt changes
        (or after `wait` seconds, at most 120)."""
        wait = min(max(wait, 0.0), 120.0)
        timeout = httpx.Timeout(self.timeout, read=self.timeout + wait)
        path = self._build_path(build_id)
        response = self._call(
            lambda: self.http.get(path, params={"wait": wait} if wait else {}, timeout=timeout)
        )
        return Build.of(_parse(dict[str, Any], response))

    def watch(self, build_id: str, wait: float = 30) -> Iterator[Build]:
        """The build now, then each change (long-polling), ending with the finished view."""
        build = self.get(build_id)
        yield build
        while not build.finished:
            build = self.get(build_id, wait=wait)
            yield build

    def log(self, build_id: str) -> str:
        """The log so far, whole."""
        return self._call(lambda: self.http.get(self._build_path(build_id, "log"))).text

    def follow_log(
        self, build_id: str, *, last_event_id: str | None = None, idle_timeout: float = 300.0
    ) -> LogStream:
        """The log as it is written (Server-Sent Events): iterate it for text chunks; when the iteration
        ends, `.end` says how the build ended. A dropped stream resumes where it stopped (Last-Event-ID);
        `last_event_id` (an earlier stream's `last_id`) starts after that chunk."""
        path = self._build_path(build_id, "log")
        return LogStream(self, path, idle_timeout=idle_timeout, last_id=last_event_id)

    def artifacts(self, build_id: str) -> list[Artifact]:
        response = self._call(lambda: self.http.get(self._build_path(build_id, "artifacts")))
        return _parse(list[Artifact], response)

    def download(self, artifact: Artifact, dest_dir: Path) -> Path:
        """Stream an artifact into `dest_dir`: into a temporary file first, its sha256 checked against the
        listed one, then renamed into place. A mismatch removes the file and raises InfraError."""
        name = artifact.name
        if not name or Path(name).name != name or name in (".", ".."):
            raise InfraError(f"the server listed an unsafe artifact name {name!r}", kind="bad_response")
        dest_dir.mkdir(parents=True, exist_ok=True)
        return self._retry(lambda: self._download_once(artifact, dest_dir / name))

    # --- plumbing --------------------------------------------------------------------------------------
    def _download_once(self, artifact: Artifact, target: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        partial = Path(name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self.stream("GET", self._artifact_url(artifact)) as response:
                for chunk in response.iter_bytes(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != artifact.sha256.lower():
                raise InfraError(
                    f"{artifact.name}: sha256 mismatch: the server listed {artifact.sha256}, the download "
                    f"is {actual}; the file was removed",
                    kind="checksum_mismatch",
                )
            partial.chmod(0o755 if artifact.kind == "binary" else 0o644)
            partial.replace(target)
            return target
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed request (not retried here): an error answer raises as in `check`, and an httpx
        error, also one while the body is read in the `with` block, becomes a TransientError."""
        try:
            with self.http.stream(method, url, **kwargs) as response:
                if not response.is_success:
                    response.read()
                check(response)
                yield response
        except httpx.HTTPError as e:
            raise self.translate(e) from e

    def _artifact_url(self, artifact: Artifact) -> str:
        """The listed URL when it is this server's; else its path on this server (the token goes nowhere
        else)."""
        listed, ours = urlsplit(artifact.url), urlsplit(self.url)
        if (listed.scheme, listed.netloc) == (ours.scheme, ours.netloc):
            return artifact.url
        return listed.path + (f"?{listed.query}" if listed.query else "")

    @staticmethod
    def _build_path(build_id: str, *rest: str) -> str:
        if not build_id or len(build_id) > 200:  # "" would ask for the build list (and get redirected)
            raise BadInput(f"not a build id: {build_id[:80]!r}", kind="bad_build_id")
        return "/".join(["/v1/builds", quote(build_id, safe=""), *rest])

    def _call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        def once() -> httpx.Response:
            try:
                response = send()
            except httpx.HTTPError as e:
                raise self.translate(e) from e
            check(response)
            return response

        return self._retry(once)

    def _retry(self, attempt: Callable[[], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        return retrying(attempt)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(error, "retry_after", None)
        if asked is not None:
            return float(min(asked, self.max_wait))
        return float(min(self.backoff * 2 ** (state.attempt_number - 1), self.max_wait))

    def translate(self, error: httpx.HTTPError) -> TransientError:
        if isinstance(error, httpx.TimeoutException):
            return TransientError(f"the gocaas server at {self.shown_url} did not answer", kind="timeout")
        detail = str(error) or type(error).__name__
        return TransientError(f"cannot reach the gocaas server at {self.shown_url}: {detail}", kind="network")


def check(response: httpx.Response) -> None:
    """Raise the gocaas error for an HTTP error answer, with the server's message."""
    if response.is_success:
        return
    status = response.status_code
    message = _message(response)
    if status in (502, 503, 504):
        raise ServerBusy(
            f"the server is unavailable (HTTP {status}): {message}", retry_after=_after(response)
        )
    if status >= 500:
        raise InfraError(f"the server failed (HTTP {status}): {message}", kind="server_error")
    raise BadInput(f"{message} (HTTP {status})", kind=f"http_{status}")


def _parse(kind: type[M], response: httpx.Response) -> M:
    """The body as `kind` (a model, `dict`, `list[Model]`); anything else is the server's fault."""
    try:
        return TypeAdapter(kind).validate_json(response.content)
    except ValidationError:
        raise InfraError(
            f"the server sent an unreadable answer to {response.request.url.path}: {response.text[:200]!r}",
            kind="bad_response",
        ) from None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase or "no message"


def _after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
