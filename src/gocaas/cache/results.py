"""The result cache: an earlier successful build's report and files, under a key computed by the pipeline.

The cache knows nothing about stages or what the key means: it stores a JSON document and a set of files
under a key, atomically (a complete entry appears by one rename, or not at all), and hands them back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = "results"


@dataclass(frozen=True)
class CachedResult:
    key: str
    document: dict[str, Any]
    files: Path  # a directory holding the entry's files by name


class ResultCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _entry(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a result key: {key!r}")
        return self.root / key[:2] / key

    def lookup(self, key: str) -> CachedResult | None:
        entry = self._entry(key)
        try:
            document = json.loads((entry / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = entry / "files"
        if not all((files / name).is_file() for name in document.get("_files", [])):
            return None  # damaged entry: a miss, rebuilt and replaced
        os.utime(entry / "result.json")  # recently used, for whoever trims the cache
        return CachedResult(key, document, files)

    def store(self, key: str, document: dict[str, Any], files: list[Path]) -> None:
        entry = self._entry(key)
        if entry.exists():
            return
        staging = entry.with_name(f".{key}.{os.getpid()}.{time.monotonic_ns()}")
        (staging / "files").mkdir(parents=True)
        try:
            names = []
            for path in files:
                shutil.copyfile(path, staging / "files" / path.name)
                shutil.copymode(path, staging / "files" / path.name)
                names.append(path.name)
            (staging / "result.json").write_text(json.dumps({**document, "_files": names}), encoding="utf-8")
            try:
                staging.rename(entry)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)  # another build stored the same key first
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
