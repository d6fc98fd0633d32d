"""Git intake: a shallow fetch of one ref into the build's directory, and what git says about a directory.

Every git command runs through gocaas.go.runner.run_command with an explicit, minimal environment: no system
or global config, no terminal prompts, a throwaway HOME, and GIT_ALLOW_PROTOCOL limited to the schemes the
operator allows, so that neither the URL nor the repository can switch transports behind our back.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gocaas.errors import BadInput, GocaasError, InfraError, TransientError
from gocaas.go.runner import CommandResult, run_command
from gocaas.settings import Settings
from gocaas.source.workspace import Checkout, check_symlinks, find_module_root

_PATH = "/usr/local/bin:/usr/bin:/bin"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# `<transport>::<address>` runs a remote helper (ext:: runs any command): its transport is its scheme.
_HELPER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
_SCP_LIKE_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")
_SSH_ALIASES = {"git+ssh": "ssh", "ssh+git": "ssh"}
_FETCHED_TAG_RE = re.compile(r"^([0-9a-f]{40,64})\t[^\t]*\ttag '([^']+)' of ", re.MULTILINE)
# The describe of a directory is advisory: don't let a huge repository hold up the build for long.
_DESCRIBE_TIMEOUT = 60.0

_MISSING_REF = (
    "couldn't find remote ref",
    "no such remote ref",
    "unadvertised object",
    "not our ref",
    "invalid refspec",
    "no such ref",
)
_MISSING_REPO = (
    "repository not found",
    "does not appear to be a git repository",
    "not a git repository",
    "returned error: 404",
    "returned error: 403",
    "returned error: 401",
    "could not read username",
    "could not read password",
    "authentication failed",
    "permission denied (publickey",
    "host key verification failed",
    "not allowed",  # transport 'x' not allowed: GIT_ALLOW_PROTOCOL said no
    "unable to find remote helper",
)
_NETWORK = (
    "could not resolve host",
    "could not resolve hostname",
    "temporary failure in name resolution",
    "name or service not known",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "connection reset",
    "network is unreachable",
    "no route to host",
    "failed to connect to",
    "rpc failed",
    "early eof",
    "the remote end hung up unexpectedly",
)
_HTTP_5XX_RE = re.compile(r"returned error: 5\d\d")


def looks_like_git_url(location: str) -> bool:
    """A URL with a scheme (https://, ssh://, git://, file://...) or scp-like `user@host:path`."""
    return bool(_SCHEME_RE.match(location) or _SCP_LIKE_RE.match(location))


def redact(url: str) -> str:
    """The URL without credentials, fit for messages and logs."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)
    # An http(s) user name is often a token by itself.
    return re.sub(r"^(https?://)[^/@]+@", r"\1***@", url, flags=re.IGNORECASE)


def url_scheme(url: str) -> str:
    """The transport git would use for `url`, after refusing URLs that could be read as options.

    Follows git's own rules: `scheme://...`; `helper::address`; a colon before the first slash makes it
    scp-like ssh (`host:path`, `user@host:path`); anything else is a local path ("file").
    """
    if url.startswith("-"):
        raise BadInput(f"git URL {redact(url)!r} starts with '-'", kind="bad_url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise BadInput(f"git URL {redact(url)!r} contains whitespace or control characters", kind="bad_url")
    match = _SCHEME_RE.match(url)
    if match:
        scheme = match.group(1).lower()
        scheme = _SSH_ALIASES.get(scheme, scheme)
        rest = url[match.end() :]
        authority, _, path = rest.partition("/")
        host = authority.rpartition("@")[2]
        if host.lstrip("[").startswith("-"):  # would reach ssh as an option
            raise BadInput(f"git URL {redact(url)!r} has a host starting with '-'", kind="bad_url")
        # Caught here, git's own complaints about these read like a network or server failure.
        if scheme == "file":
            if not rest.strip("/"):
                raise BadInput(f"git URL {redact(url)!r} names no path", kind="bad_url")
        elif not _host_name(host):
            raise BadInput(f"git URL {redact(url)!r} names no host (or a malformed one)", kind="bad_url")
        elif not path.strip("/"):
            raise BadInput(f"git URL {redact(url)!r} names no repository on its host", kind="bad_url")
        return scheme
    match = _HELPER_RE.match(url)
    if match:
        return match.group(1).lower()
    colon, slash = url.find(":"), url.find("/")
    if colon != -1 and (slash == -1 or colon < slash):
        host = url[:colon].rpartition("@")[2]
        if host.startswith("-"):
            raise BadInput(f"git URL {redact(url)!r} has a host starting with '-'", kind="bad_url")
        if not host or not url[colon + 1 :].strip("/"):
            raise BadInput(f"git URL {redact(url)!r} needs a host and a path (host:path)", kind="bad_url")
        return "ssh"
    return "file"


def _host_name(host: str) -> str:
    """The host of a URL's host[:port] part ("" if none, or an unclosed IPv6 bracket)."""
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else ""
    return host.partition(":")[0]


def git_env(home: Path, settings: Settings) -> dict[str, str]:
    """The whole environment of a git command: nothing from the caller's."""
    return {
        "PATH": _PATH,
        "HOME": str(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ALLOW_PROTOCOL": ":".join(settings.git_allowed_schemes),
        "LANG": "C",
        "LC_ALL": "C",
    }


class _Git:
    """Runs git commands in one environment against one overall deadline."""

    def __init__(self, env: dict[str, str], config: Sequence[str], timeout: float) -> None:
        self.env = env
        self.config = [arg for item in config for arg in ("-c", item)]
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout

    def __call__(self, *args: str, cwd: Path) -> CommandResult:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise InfraError(f"git timed out after {self.timeout:.0f}s", kind="timeout")
        command = args[2] if args[0] == "-C" else args[0]
        return run_command(
            ["git", *self.config, *args], env=self.env, cwd=cwd, timeout=remaining, what=f"git {command}"
        )


def clone(url: str, ref: str | None, dest: Path, settings: Settings) -> Checkout:
    """Fetch `ref` (a branch, tag or full commit sha; default: the remote HEAD) of `url` into `dest`, check
    it out, record describe and commit, then drop .git so the build can't depend on it."""
    scheme = url_scheme(url)
    shown = redact(url)
    if scheme not in settings.git_allowed_schemes:
        allowed = ", ".join(settings.git_allowed_schemes) or "none"
        raise BadInput(
            f"git URL {shown!r}: scheme {scheme!r} is not allowed (allowed: {allowed})", kind="bad_url"
        )
    if scheme == "file" and not url.lower().startswith("file:"):
        # git fetch runs inside dest: a relative path must mean what it meant to the caller.
        url = str(Path(url).absolute())
    config = ["init.defaultBranch=gocaas", "advice.detachedHead=false", "core.fsmonitor=false"]
    if "file" in settings.git_allowed_schemes:
        config.append("protocol.file.allow=always")
    with tempfile.TemporaryDirectory(prefix="gocaas-git-home-") as home:
        git = _Git(git_env(Path(home), settings), config, settings.git_timeout)
        _check(git("init", "-q", "--template=", str(dest), cwd=dest), url, ref)
        fetched = git(
            "-C", str(dest), "fetch", "-q", "--depth", "1", "--no-tags", "--", url, ref or "HEAD", cwd=dest
        )
        _check(fetched, url, ref)
        _keep_fetched_tag(git, dest)
        _check(git("-C", str(dest), "checkout", "-q", "--detach", "FETCH_HEAD", cwd=dest), url, ref)
        commit = _check(git("-C", str(dest), "rev-parse", "HEAD", cwd=dest), url, ref).strip()
        described = git("-C", str(dest), "describe", "--tags", "--always", cwd=dest)
    shutil.rmtree(dest / ".git")
    check_symlinks(dest, what="repository entry")
    root = find_module_root(dest, label=f"{shown} at {ref or 'HEAD'}")
    return Checkout(root, described.stdout.strip() if described.ok else None, commit or None)


def _keep_fetched_tag(git: _Git, dest: Path) -> None:
    """A fetch without a destination stores no ref, so describe would not see a tag we asked for by name:
    store it as the tag it is (the FETCH_HEAD line says 'tag ...')."""
    try:
        fetch_head = (dest / ".git" / "FETCH_HEAD").read_text(errors="replace")
    except OSError:
        return
    match = _FETCHED_TAG_RE.search(fetch_head)
    if match:
        sha, name = match.groups()
        git("-C", str(dest), "update-ref", f"refs/tags/{name}", sha, cwd=dest)


def _check(result: CommandResult, url: str, ref: str | None) -> str:
    """Stdout of a successful command; a failure translated into BadInput or InfraError."""
    if result.ok:
        return result.stdout
    shown = redact(url)
    raise classify_failure(result.stderr.replace(url, shown), shown, ref)


def classify_failure(stderr: str, shown_url: str, ref: str | None) -> GocaasError:
    """Whose fault a failed git command is, from what git printed."""
    text = stderr.lower()
    detail = _tail(stderr)
    if any(marker in text for marker in _MISSING_REF):
        short_sha = ref is not None and re.fullmatch(r"[0-9a-f]{4,39}", ref) is not None
        hint = " (a commit must be given as its full sha)" if short_sha else ""
        return BadInput(f"git ref {ref or 'HEAD'!r} not found in {shown_url}{hint}: {detail}", kind="bad_ref")
    if any(marker in text for marker in _MISSING_REPO):
        return BadInput(f"git repository {shown_url!r} not found or not readable: {detail}", kind="bad_url")
    if any(marker in text for marker in _NETWORK) or _HTTP_5XX_RE.search(text):
        return TransientError(f"network failure fetching {shown_url}: {detail}", kind="network")
    return InfraError(f"git failed for {shown_url}: {detail}", kind="git")


def _tail(stderr: str, lines: int = 4) -> str:
    kept = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def _git_could_find_a_repository(path: Path) -> bool:
    """Whether `path` or a parent holds a `.git` (a directory, or a worktree's file): git's discovery in
    git_env's environment, which has no GIT_DIR. Saves a git process per build of a plain directory."""
    path = path.absolute()
    return any(os.path.lexists(directory / ".git") for directory in (path, *path.parents))


def describe_worktree(path: Path, settings: Settings) -> Checkout:
    """describe/commit of a directory inside a git work tree (root: `path`); any failure gives None.

    Read-only on purpose: `git describe --dirty` refreshes and rewrites the index of the user's repository,
    so we describe without --dirty and ask `git status` (with GIT_OPTIONAL_LOCKS=0, which writes nothing)
    whether tracked files changed, then add "-dirty" as describe would.
    """
    if not _git_could_find_a_repository(path):
        return Checkout(path)
    config = ["core.fsmonitor=false", "core.untrackedCache=false"]
    try:
        with tempfile.TemporaryDirectory(prefix="gocaas-git-home-") as home:
            env = git_env(Path(home), settings) | {"GIT_OPTIONAL_LOCKS": "0"}
            git = _Git(env, config, min(settings.git_timeout, _DESCRIBE_TIMEOUT))
            inside = git("rev-parse", "--is-inside-work-tree", cwd=path)
            if not inside.ok or inside.stdout.strip() != "true":
                return Checkout(path)
            head = git("rev-parse", "--verify", "-q", "HEAD", cwd=path)
            if not head.ok:  # a repository without commits yet
                return Checkout(path)
            described = git("describe", "--tags", "--always", cwd=path)
            status = git("status", "--porcelain", "--untracked-files=no", cwd=path)
    except InfraError:  # git missing or too slow: the describe is advisory
        return Checkout(path)
    describe = described.stdout.strip() if described.ok else None
    if describe and status.ok and status.stdout.strip():
        describe += "-dirty"
    return Checkout(path, describe or None, head.stdout.strip() or None)
