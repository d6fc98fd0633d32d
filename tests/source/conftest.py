"""Fixtures of the source-intake tests. `settings` deliberately overrides the session-wide one: intake needs
no toolchain or module proxy, and each test gets its own data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from gocaas.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """The build's directory, alone in its own box so that any escape from it shows."""
    return tmp_path / "box" / "ws"


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in"
    path.mkdir()
    return path
