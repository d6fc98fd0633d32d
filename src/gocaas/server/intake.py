"""From an API request to a BuildSpec: the server's source policy (which git URLs it fetches, uploaded
archives checked before they are queued) and the fingerprint that makes identical requests one build."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from gocaas.errors import BadInput, GocaasError
from gocaas.go.gomod import module_path
from gocaas.server.schemas import BuildOptionsIn
from gocaas.settings import Settings
from gocaas.source.archive import extract_archive
from gocaas.source.git import redact, url_scheme
from gocaas.spec import BuildOptions, BuildSpec, SourceKind, SourceSpec, Target, TestOptions

__all__ = ["FieldError", "check_git_url", "check_upload", "fingerprint", "make_spec"]

_SCHEME_HOST_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/@]*@)?(\[[^\]]*\]|[^/:]*)")
_SCP_HOST_RE: Final = re.compile(r"^(?:[^@/:]*@)?([^/:]+):")


class FieldError(GocaasError):
    """Bad input in a named request field: answered 4xx with the field in the body."""

    default_kind = "bad_request"

    def __init__(self, field: str, message: str, *, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


def git_host(url: str) -> str | None:
    match = _SCHEME_HOST_RE.match(url) or _SCP_HOST_RE.match(url)
    return match.group(1).lower().strip("[]") if match else None


def check_git_url(url: str, settings: Settings, field: str) -> None:
    """A git URL the server may fetch: an allowed scheme, never a local path or file:// unless the operator
    allows them, and an allowed host when the operator lists hosts."""
    try:
        scheme = url_scheme(url)
    except BadInput as e:
        raise FieldError(field, e.message) from None
    shown = redact(url)
    if scheme == "file" and not settings.server_allow_local_git:
        raise FieldError(field, f"{shown!r}: local paths and file:// URLs are not accepted by this server")
    if scheme not in settings.git_allowed_schemes:
        allowed = ", ".join(s for s in settings.git_allowed_schemes if s != "file") or "none"
        raise FieldError(field, f"{shown!r}: scheme {scheme!r} is not allowed (allowed: {allowed})")
    if settings.server_git_hosts and scheme != "file":
        host = git_host(url)
        if host not in {h.lower() for h in settings.server_git_hosts}:
            raise FieldError(
                field,
                f"{shown!r}: host {host!r} is not allowed (allowed: {', '.join(settings.server_git_hosts)})",
            )


def make_spec(source: SourceSpec, options: BuildOptionsIn, default_target: Target) -> BuildSpec:
    """The request's options as a BuildSpec; a bad value is a FieldError naming it."""
    try:
        targets = tuple(Target.parse(t) for t in options.targets) or (default_target,)
        return BuildSpec(
            source=source,
            options=BuildOptions(
                go_version=options.go_version,
                targets=targets,
                cgo=options.cgo or options.race,
                vet=options.vet,
                version=options.version,
                strip=options.strip,
                archives=options.archives,
                reuse=options.reuse,
                tests=TestOptions(enabled=options.tests, race=options.race, coverage=options.coverage),
            ),
        )
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(str(p) for p in error["loc"] if p not in ("options", "tests")) or "options"
        raise FieldError(where, f"{error['msg']} (got {error.get('input')!r})") from None
    except ValueError as e:
        raise FieldError("targets", str(e)) from None


def git_source(url: str, ref: str | None, settings: Settings, *, prefix: str = "") -> SourceSpec:
    check_git_url(url, settings, f"{prefix}git_url")
    try:
        return SourceSpec(kind=SourceKind.GIT, location=url, ref=ref)
    except ValidationError as e:
        raise FieldError(f"{prefix}ref", e.errors()[0]["msg"]) from None


def fingerprint(
    spec: BuildSpec, tenant_id: int, content: str | None = None, timeout_s: float | None = None
) -> str:
    """Identical requests of one tenant share this. `content` (an upload's sha256) replaces the upload's
    path, which differs per request. The timeout counts: a request for a longer one must not be handed a
    queued build that will stop sooner."""
    data = spec.model_dump(mode="json", exclude={"options": {"reuse"}})
    if content is not None:
        data["source"]["location"] = f"sha256:{content}"
    key: list[object] = [tenant_id, data] if timeout_s is None else [tenant_id, data, timeout_s]
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def archive_suffix(head: bytes) -> str:
    """The upload's format from its first bytes (clients name files as they like)."""
    if head.startswith(b"\x1f\x8b"):
        return ".tar.gz"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return ".zip"
    raise FieldError("archive", "not a .tar.gz or .zip archive (by its first bytes)", status=400)


def check_upload(path: Path, settings: Settings, label: str = "the upload") -> str:
    """Extract the upload once into a scratch directory with every intake check: a broken archive, one
    that escapes, or one without a Go module is refused now, not after it waited in the queue. Returns
    the module path. Errors call the archive `label` (the sender's file name)."""
    scratch = Path(tempfile.mkdtemp(prefix="gocaas-upload-check-", dir=settings.uploads_dir))
    try:
        return module_path(extract_archive(path, scratch, settings, label=label).root)
    except BadInput as e:
        raise FieldError("archive", e.message, status=400) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
