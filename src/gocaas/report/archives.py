"""Deterministic .tar.gz and .zip archives of a target's binaries: fixed timestamps, owners and order, so
the same binaries always give the same archive bytes (and checksums)."""

from __future__ import annotations

import gzip
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from gocaas.atomic import replacing

_EPOCH = 315532800  # 1980-01-01, the earliest time a zip can hold


def write_tar_gz(dest: Path, files: Sequence[tuple[str, Path]]) -> Path:
    """Write (name in archive, file) pairs as a deterministic .tar.gz."""
    with (
        replacing(dest) as tmp,
        tmp.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=_EPOCH) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in sorted(files):
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = _EPOCH, 0, 0, "", ""
            info.mode = 0o755
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return dest


def write_zip(dest: Path, files: Sequence[tuple[str, Path]]) -> Path:
    """Write (name in archive, file) pairs as a deterministic .zip."""
    with replacing(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as src, archive.open(info, "w") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    return dest
