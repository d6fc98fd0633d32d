"""Source intake: turn a SourceSpec into the build's private copy of a Go module, with its digest.

The build only ever works on that copy (in `dest`, which the build owns); the user's directory, archive or
repository is only read. Everything that can go wrong with the input is a BadInput naming the culprit.
"""

from __future__ import annotations

from pathlib import Path

from gocaas.errors import BadInput, InfraError
from gocaas.settings import Settings
from gocaas.source.archive import extract_archive, is_archive_name
from gocaas.source.changes import changed_files
from gocaas.source.digest import digest_with_manifest, source_digest
from gocaas.source.directory import copy_directory
from gocaas.source.git import clone, looks_like_git_url
from gocaas.source.workspace import Checkout, Workspace
from gocaas.spec import SourceKind, SourceSpec

__all__ = ["Workspace", "detect_kind", "intake", "local_path", "source_digest"]

# Each kind with its article, for messages.
_A: dict[SourceKind, str] = {
    SourceKind.DIRECTORY: "a directory",
    SourceKind.ARCHIVE: "an archive",
    SourceKind.GIT: "a git URL",
}


def intake(spec: SourceSpec, dest: Path, settings: Settings) -> Workspace:
    """Bring the source described by `spec` into `dest` (created if missing, must be empty) and digest it."""
    if spec.ref is not None and spec.kind is not SourceKind.GIT:
        raise BadInput(f"a ref ({spec.ref}) only applies to git sources, not {_A[spec.kind]}", kind="bad_ref")
    dest = dest.absolute()
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        # The build owns dest; finding something there means two builds share a directory.
        raise InfraError(f"workspace directory {dest} is not empty", kind="internal")
    if spec.changed_since is not None and spec.kind is not SourceKind.DIRECTORY:
        raise BadInput(
            f"--changed-since needs a local git checkout as the source, not {_A[spec.kind]}", kind="bad_ref"
        )
    changed: tuple[str, ...] | None = None
    if spec.changed_since is not None:
        # Asked of the user's checkout before copying (read-only: the copy has no .git).
        changed = tuple(changed_files(Path(spec.location), spec.changed_since, Path(spec.location), settings))
    checkout: Checkout
    if spec.kind is SourceKind.DIRECTORY:
        checkout = copy_directory(Path(spec.location), dest, settings)
    elif spec.kind is SourceKind.ARCHIVE:
        checkout = extract_archive(Path(spec.location), dest, settings)
    else:
        checkout = clone(spec.location, spec.ref, dest, settings)
    digest, manifest = digest_with_manifest(checkout.root)
    return Workspace(
        checkout.root, digest, len(manifest), checkout.describe, checkout.commit, changed, manifest
    )


def local_path(location: str) -> str:
    """The absolute path, links resolved, of a local directory or archive as the user named it."""
    try:
        return str(Path(location).resolve())
    except RuntimeError as exc:  # how Python 3.11 reports a symlink loop
        raise BadInput(f"{location!r}: symlink loop", kind="no_source") from exc
    except OSError as exc:
        raise BadInput(f"{location!r}: {(exc.strerror or str(exc)).lower()}", kind="no_source") from exc


def detect_kind(location: str) -> SourceKind:
    """What the CLI's source argument is: an existing directory, a git URL, or an archive by its name.

    URLs are recognised before archive names: an archive is a local file, so a URL ending in .zip can only
    mean a repository.
    """
    if not location.strip():  # Path("") is the working directory: an unset "$SRC" must not build that
        message = "the source is empty: give a module directory, an archive or a git URL"
        raise BadInput(message, kind="no_source")
    try:
        if Path(location).is_dir():
            return SourceKind.DIRECTORY
    except OSError as exc:  # a name too long, a directory on the way we may not search
        if not looks_like_git_url(location):
            raise BadInput(f"{location!r}: {(exc.strerror or str(exc)).lower()}", kind="no_source") from exc
    if looks_like_git_url(location):
        return SourceKind.GIT
    if is_archive_name(location):
        return SourceKind.ARCHIVE
    raise BadInput(
        f"{location!r} is not a directory, an archive (.zip, .tar.gz, .tgz) or a git URL", kind="no_source"
    )
