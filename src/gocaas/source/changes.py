"""What changed in the user's git checkout since a ref, for `gocaas test --changed-since REF`.

Asked of the user's own directory (the build's private copy has no .git), so every command is read-only.
That rules out `git diff REF`: comparing with the work tree, it rewrites a stale index whatever
GIT_OPTIONAL_LOCKS says. So the answer is two questions whose union covers "REF against the work tree":
`git diff-tree REF HEAD` (two commits, no index involved) and `git status` (HEAD, index, work tree and
untracked files; it refreshes only in memory when GIT_OPTIONAL_LOCKS=0). A file changed since REF and then
changed back is reported anyway, which can only make more packages run, never fewer. No fsmonitor or
untracked cache is consulted or written, and paths are literal pathspecs after `--`.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePosixPath

from gocaas.errors import BadInput, InfraError
from gocaas.go.runner import CommandResult
from gocaas.settings import Settings
from gocaas.source.git import _Git, _tail, git_env

_CONFIG = ("core.fsmonitor=false", "core.untrackedCache=false")
# Anything else is left to git to accept or not: branches, tags, shas, HEAD~3, origin/main, v1^{commit}.
_BAD_REF_RE = re.compile(r"[\x00-\x20\x7f]")
_NOT_A_REPO = "--changed-since needs a git checkout"


def validate_ref(ref: str) -> str:
    if not ref or ref.startswith("-") or _BAD_REF_RE.search(ref):
        raise BadInput(
            f"--changed-since {ref!r}: not a git ref (empty, starts with '-' or has spaces)", kind="bad_ref"
        )
    return ref


def changed_files(repo: Path, ref: str, module_root: Path, settings: Settings) -> list[str]:
    """Files that differ between `ref` and the work tree of the checkout holding `repo`: committed, staged
    and unstaged changes (deletions included), plus untracked files that are not ignored.

    Paths are POSIX, relative to `module_root`, sorted; files outside the module root are left out.
    """
    validate_ref(ref)
    with tempfile.TemporaryDirectory(prefix="gocaas-git-home-") as home:
        env = git_env(Path(home), settings) | {"GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "1"}
        git = _Git(env, _CONFIG, settings.git_timeout)
        top = _toplevel(git, repo)
        prefix = _module_prefix(top, module_root)
        pathspec = ["--", prefix] if prefix else ["--"]
        found = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", cwd=top)
        if not found.ok or not found.stdout.strip():
            raise BadInput(
                f"--changed-since {ref!r}: no such commit in {top} (a shallow clone may lack it: fetch it)",
                kind="bad_ref",
            )
        commit = found.stdout.strip()
        # --no-renames: a moved file counts at its old path and its new one; --no-relative overrides a
        # repository's diff.relative, so paths are always from the top of the work tree.
        committed = git(
            "diff-tree", "-r", "--name-only", "-z", "--no-renames", "--no-relative",
            commit, "HEAD", *pathspec, cwd=top,
        )  # fmt: skip
        # Submodules: a moved pointer counts, their own dirty files are not ours to look into.
        status = git(
            "status", "--porcelain=v2", "-z", "--untracked-files=all", "--no-renames",
            "--ignore-submodules=dirty", *pathspec, cwd=top,
        )  # fmt: skip
    paths = {name for name in _ok(committed, "diff-tree").split("\0") if name}
    paths |= _status_paths(_ok(status, "status"))
    return sorted(_under(paths, prefix))


def _toplevel(git: _Git, repo: Path) -> Path:
    if not repo.is_dir():
        raise BadInput(f"{_NOT_A_REPO}: {repo} is not a directory", kind="not_a_repo")
    shown = git("rev-parse", "--show-toplevel", cwd=repo)
    top = shown.stdout.strip()
    if not shown.ok or not top:
        # Also what a repository owned by someone else says ("dubious ownership"): show git's words.
        raise BadInput(f"{_NOT_A_REPO}: {repo}: {_tail(shown.stderr)}", kind="not_a_repo")
    return Path(top)


def _module_prefix(top: Path, module_root: Path) -> str:
    """The module root relative to the top of the work tree ("" when they are the same)."""
    try:
        rel = module_root.resolve().relative_to(top.resolve())
    except ValueError:
        raise BadInput(
            f"{_NOT_A_REPO}: module root {module_root} is outside the work tree {top}", kind="not_a_repo"
        ) from None
    return rel.as_posix() if rel.parts else ""


def _ok(result: CommandResult, what: str) -> str:
    if not result.ok:
        raise InfraError(f"git {what} failed: {_tail(result.stderr)}", kind="git")
    return result.stdout


def _status_paths(stdout: str) -> set[str]:
    """Every path in `git status --porcelain=v2 -z` output (changed, unmerged, untracked)."""
    # Fields before the path: "1 XY sub mH mI mW hH hI path", "2 ... X100 path\0orig",
    # "u XY sub m1 m2 m3 mW h1 h2 h3 path", "? path".
    fields_before_path = {"1": 8, "2": 9, "u": 10, "?": 1}
    paths: set[str] = set()
    tokens = iter(stdout.split("\0"))
    for token in tokens:
        skip = fields_before_path.get(token[:1])
        if skip is None or token[1:2] != " ":
            continue
        parts = token.split(" ", skip)
        if len(parts) > skip:
            paths.add(parts[skip])
        if token[0] == "2":  # a rename's original path is the next token
            paths.add(next(tokens, ""))
    paths.discard("")
    return paths


def _under(paths: set[str], prefix: str) -> set[str]:
    if not prefix:
        return paths
    base = PurePosixPath(prefix)
    return {
        PurePosixPath(p).relative_to(base).as_posix() for p in paths if PurePosixPath(p).is_relative_to(base)
    }
