"""Archive intake: .zip, .tar.gz and .tgz, extracted so that nothing lands outside the build's directory.

Every entry is checked before anything is written: no absolute paths, no '..', no path that goes through a
symlink of the archive, links only to places inside, no devices or fifos, and the count, total size and
compression ratio within the operator's limits (sizes from the headers). Writing then repeats the checks
that depend on what is already on disk (tarfile's 'data' filter for tar; byte counting and O_NOFOLLOW for
zip), and a last pass follows every symlink that was created to make sure it stays inside.
"""

from __future__ import annotations

import errno
import gzip
import os
import posixpath
import re
import stat
import tarfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import IO

from gocaas.errors import BadInput, InfraError
from gocaas.settings import Settings
from gocaas.source.workspace import Checkout, check_symlinks, find_module_root, link_escapes

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar.gz", ".tgz")
_CHUNK = 1 << 16
_MAX_LINK_TARGET = 4096
# No module needs more, and deeper paths make the directory creation of os and pathlib recurse past
# Python's limit (an upload of 8 KB with 2,000 nested directories did).
_MAX_DEPTH = 128
_MAX_NAME = 4096
# What a tar stream holds besides file data (headers, padding, pax records), allowed per entry: the
# decompressed stream is capped at the data limit plus this, so a bomb hidden in headers is caught too.
_TAR_OVERHEAD_PER_ENTRY = 8192
# Errors of our own writes that a crafted archive can cause; any other OSError is the machine's problem.
_INPUT_ERRNOS = {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError)

_FILTER_REASONS: tuple[tuple[type[tarfile.FilterError], str], ...] = (
    (tarfile.AbsolutePathError, "absolute path"),
    (tarfile.OutsideDestinationError, "escapes the destination"),
    (tarfile.SpecialFileError, "devices, fifos and other special files are not allowed"),
    (tarfile.AbsoluteLinkError, "link to an absolute path"),
    (tarfile.LinkOutsideDestinationError, "link points outside the destination"),
)


def is_archive_name(location: str) -> bool:
    return location.lower().endswith(ZIP_SUFFIXES + TAR_SUFFIXES)


def extract_archive(path: Path, dest: Path, settings: Settings, *, label: str | None = None) -> Checkout:
    """Extract the archive at `path` into the existing, empty `dest` and find the module in it. Errors name
    the archive as `label` (default: its file name; an upload's stored name means nothing to its sender)."""
    name = label or path.name
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BadInput(f"no such archive: {path}", kind="no_source") from None
    except OSError as exc:  # a symlink loop, a name too long, a directory we may not search
        raise BadInput(f"archive {path}: {(exc.strerror or str(exc)).lower()}", kind="no_source") from exc
    if not stat.S_ISREG(info.st_mode):
        # Never opened: reading a fifo blocks, a device may never end.
        raise BadInput(f"archive {path}: not a regular file", kind="no_source")
    lowered = path.name.lower()
    if not lowered.endswith(ZIP_SUFFIXES + TAR_SUFFIXES):
        raise BadInput(f"{name}: not a .zip, .tar.gz or .tgz archive", kind="bad_archive")
    if not os.access(path, os.R_OK):
        raise BadInput(f"cannot read archive {path}: permission denied", kind="no_source")
    budget = _Budget(settings, info.st_size)
    try:
        if lowered.endswith(ZIP_SUFFIXES):
            _extract_zip(path, dest, budget)
        else:
            _extract_tar(path, dest, budget, name)
    except _CORRUPT as exc:
        raise BadInput(
            f"archive {name}: corrupt, truncated or not the format its name says ({exc})",
            kind="bad_archive",
        ) from exc
    except NotImplementedError as exc:  # zipfile: a compression method Python can't read
        raise BadInput(f"archive {name}: {exc}", kind="bad_archive") from exc
    except OSError as exc:
        if exc.errno in _INPUT_ERRNOS:
            where = os.path.relpath(exc.filename, dest) if isinstance(exc.filename, str) else "?"
            message = f"archive {name}: entries conflict at {where!r} ({exc.strerror})"
            raise BadInput(message, kind="bad_archive") from exc
        raise InfraError(f"cannot extract {name}: {exc}", kind="filesystem") from exc
    check_symlinks(dest, what="archive entry")
    return Checkout(find_module_root(dest, label=name, allow_single_dir=True))


def _refuse(name: str, reason: str) -> BadInput:
    return BadInput(f"archive entry {name!r}: {reason}", kind="bad_archive")


class _Budget:
    """The operator's limits, charged entry by entry so that the entry that breaks one is named."""

    def __init__(self, settings: Settings, archive_size: int) -> None:
        self.max_files = settings.max_archive_files
        self.max_ratio = settings.max_compression_ratio
        self.archive_size = max(archive_size, 1)
        # The ratio caps the data too; keep whichever limit is stricter.
        self.max_data = min(settings.max_archive_bytes, int(self.max_ratio * self.archive_size))
        self._max_bytes = settings.max_archive_bytes
        self.count = 0
        self.total = 0

    def charge(self, name: str, size: int) -> None:
        self.count += 1
        if self.count > self.max_files:
            raise _refuse(name, f"more than {self.max_files} entries in the archive")
        self.total += max(size, 0)
        if self.total > self._max_bytes:
            raise _refuse(name, f"total uncompressed size over {self._max_bytes} bytes")
        if self.total / self.archive_size > self.max_ratio:
            raise _refuse(name, f"compression ratio over {self.max_ratio:g} (a decompression bomb?)")

    def check_written(self, name: str, written: int) -> None:
        """Bytes actually produced, for formats whose headers can lie."""
        if written > self.max_data:
            raise _refuse(name, f"uncompressed data over {self.max_data} bytes")

    @property
    def stream_limit(self) -> int:
        return self.max_data + _TAR_OVERHEAD_PER_ENTRY * (self.count + 2)


def _parts(name: str) -> tuple[str, ...]:
    """The path components of an entry name; refuses names that could land outside the destination."""
    if "\0" in name:
        raise _refuse(name, "NUL in the path")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _refuse(name, "absolute path")
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME:
        raise _refuse(name[:200] + "…", f"path longer than {_MAX_NAME} bytes")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if len(parts) > _MAX_DEPTH:
        raise _refuse(name[:200] + "…", f"nested {len(parts)} levels deep (at most {_MAX_DEPTH})")
    if ".." in parts:
        normalized = posixpath.normpath(name)
        escapes = normalized == ".." or normalized.startswith("../")
        raise _refuse(name, "escapes the destination" if escapes else "'..' in the path")
    return parts


def _check_link(name: str, rel: str, target: str, *, hard: bool) -> None:
    kind = "hard link" if hard else "symlink"
    if target.startswith("/"):
        raise _refuse(name, f"{kind} to an absolute path ({target})")
    # A hard link names its target from the top of the archive, a symlink from its own directory.
    if link_escapes("" if hard else rel, target):
        raise _refuse(name, f"{kind} points outside the destination ({target})")


def _refuse_paths_through_links(
    entries: list[tuple[str, tuple[str, ...]]], links: set[tuple[str, ...]]
) -> None:
    """Writing `a/b` after a symlink `a` would write wherever `a` points: no archive we need does that."""
    if not links:
        return
    for name, parts in entries:
        for end in range(1, len(parts)):
            if parts[:end] in links:
                raise _refuse(name, f"path goes through the symlink {'/'.join(parts[:end])!r}")


# --- zip ---------------------------------------------------------------------------------------------


def _extract_zip(path: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(path) as archive:
        dirs: list[tuple[str, ...]] = []
        files: list[tuple[zipfile.ZipInfo, tuple[str, ...], bool]] = []
        links: dict[tuple[str, ...], str] = {}
        paths: list[tuple[str, tuple[str, ...]]] = []
        for info in archive.infolist():
            name = info.filename
            budget.charge(name, info.file_size)
            parts = _parts(name)
            if not parts:
                continue
            if info.flag_bits & 0x1:
                raise _refuse(name, "encrypted entries are not supported")
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            paths.append((name, parts))
            if info.is_dir() or kind == stat.S_IFDIR:
                dirs.append(parts)
            elif kind == stat.S_IFLNK:
                links[parts] = _zip_link_target(archive, info, parts)
            elif kind in (0, stat.S_IFREG):  # 0: made on a system that doesn't store a file type
                files.append((info, parts, bool(mode & stat.S_IXUSR)))
            else:
                raise _refuse(name, "devices, fifos and other special files are not allowed")
        _refuse_paths_through_links(paths, set(links))

        for parts in dirs:
            dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
        written = 0
        for info, parts, executable in files:
            written = _write_zip_file(archive, info, dest.joinpath(*parts), executable, written, budget)
        # Links last, so that nothing is ever written through one.
        for parts, target in links.items():
            link = dest.joinpath(*parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)


def _zip_link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo, parts: tuple[str, ...]) -> str:
    if info.file_size > _MAX_LINK_TARGET:
        raise _refuse(info.filename, "symlink target too long")
    target = archive.read(info).decode("utf-8", errors="surrogateescape")
    _check_link(info.filename, "/".join(parts), target, hard=False)
    return target


def _write_zip_file(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    executable: bool,
    written: int,
    budget: _Budget,
) -> int:
    """Write one entry, counting the bytes really produced; returns the running total."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: a second entry of the same name is refused; O_NOFOLLOW: never write through a link.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    own = 0
    with archive.open(info) as source, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        while chunk := source.read(_CHUNK):
            own += len(chunk)
            if own > info.file_size:
                raise _refuse(info.filename, "holds more data than its header says")
            budget.check_written(info.filename, written + own)
            out.write(chunk)
        os.fchmod(out.fileno(), 0o755 if executable else 0o644)
    return written + own


# --- tar.gz ------------------------------------------------------------------------------------------


class _LimitedStream:
    """The decompressed tar stream, refusing to go past the budget's limit. tarfile reads headers (pax
    records too) into memory and skips member data by decompressing it, all before our size checks could
    look at the members, so the cap has to sit underneath tarfile."""

    def __init__(self, raw: IO[bytes], budget: _Budget, label: str) -> None:
        self._raw = raw
        self._budget = budget
        self._label = label

    def _over(self) -> BadInput:
        limit = self._budget.stream_limit
        return BadInput(f"archive {self._label}: decompresses to more than {limit} bytes", kind="bad_archive")

    def read(self, size: int = -1) -> bytes:
        allowed = self._budget.stream_limit - self._raw.tell()
        want = size if 0 <= size <= allowed else allowed + 1
        data = self._raw.read(max(want, 0))
        if self._raw.tell() > self._budget.stream_limit:
            raise self._over()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self._raw.tell() + offset
        if whence == os.SEEK_END or target > self._budget.stream_limit:
            raise self._over()
        return self._raw.seek(target)

    def tell(self) -> int:
        return self._raw.tell()


def _extract_tar(path: Path, dest: Path, budget: _Budget, label: str) -> None:
    with gzip.open(path, "rb") as raw:
        stream = _LimitedStream(raw, budget, label)
        with tarfile.open(fileobj=stream, mode="r:", errorlevel=2) as archive:
            members: list[tarfile.TarInfo] = []
            paths: list[tuple[str, tuple[str, ...]]] = []
            links: set[tuple[str, ...]] = set()
            regular: set[tuple[str, ...]] = set()  # a hard link may only name a file that came before it
            dirs: set[tuple[str, ...]] = set()
            named: set[tuple[str, ...]] = set()
            while (member := archive.next()) is not None:
                data = not (member.isdir() or member.issym() or member.islnk())
                budget.charge(member.name, member.size if data else 0)
                parts = _check_tar_member(member, dest)
                if not parts:
                    continue
                # tarfile would let the later entry replace the earlier; zip's O_EXCL refuses it, so do we
                # (a directory named twice is harmless).
                if parts in named and not (member.isdir() and parts in dirs):
                    where = "/".join(parts)
                    message = f"archive {label}: entries conflict at {where!r} (two entries of that name)"
                    raise BadInput(message, kind="bad_archive")
                named.add(parts)
                if member.isdir():
                    dirs.add(parts)
                members.append(member)
                paths.append((member.name, parts))
                if member.issym():
                    links.add(parts)
                elif member.islnk():  # its target must not be reached through a symlink either
                    target = posixpath.normpath(member.linkname).split("/")
                    target_parts = tuple(part for part in target if part not in ("", "."))
                    if target_parts not in regular:
                        raise _refuse(member.name, f"hard link to {member.linkname!r}, not a file before it")
                    paths.append((member.name, target_parts))
                elif member.isfile():
                    regular.add(parts)
            _refuse_paths_through_links(paths, links)
            try:
                # Checked again member by member as they land: the filter resolves links already on disk.
                archive.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as exc:
                raise _filter_refusal(exc) from exc


def _check_tar_member(member: tarfile.TarInfo, dest: Path) -> tuple[str, ...]:
    parts = _parts(member.name)
    if member.ischr() or member.isblk() or member.isfifo():
        raise _refuse(member.name, "devices, fifos and other special files are not allowed")
    if member.issym() or member.islnk():
        _check_link(member.name, "/".join(parts), member.linkname, hard=member.islnk())
    if not _representable_time(member.mtime):
        raise _refuse(member.name, f"modification time out of range ({member.mtime})")
    try:
        tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise _filter_refusal(exc) from exc
    return parts


def _representable_time(mtime: float) -> bool:
    """Whether the platform can take `mtime` (a pax header may hold any number, 1e20 or nan): tarfile sets
    it on what it writes and would fail there with an OverflowError."""
    try:
        time.gmtime(mtime)  # converts to time_t as os.utime does, and refuses years past what C can hold
    except (OverflowError, OSError, ValueError):
        return False
    return True


def _filter_refusal(exc: tarfile.FilterError) -> BadInput:
    reason = next((text for cls, text in _FILTER_REASONS if isinstance(exc, cls)), str(exc))
    return _refuse(exc.tarinfo.name, reason)
