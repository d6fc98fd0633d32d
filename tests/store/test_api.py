"""The public surface of gocaas.store is exactly its __all__."""

from __future__ import annotations

from pathlib import Path

import gocaas.store
from gocaas.store import default_url


def test_public_api() -> None:
    assert sorted(gocaas.store.__all__) == [
        "Migration",
        "Store",
        "StoreUnavailable",
        "TestHistory",
        "TestHistoryRepo",
        "TestOutcome",
        "default_url",
        "head_revision",
        "open_store",
    ]


def test_default_url_is_a_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path}/gocaas.db"
    assert default_url(Path("relative")).startswith("sqlite:////")
