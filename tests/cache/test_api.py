"""The public surface of gocaas.cache: exactly __all__, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import gocaas.cache


def test_every_public_name_resolves() -> None:
    assert sorted(gocaas.cache.__all__) == gocaas.cache.__all__
    for name in gocaas.cache.__all__:
        assert getattr(gocaas.cache, name) is not None


def test_importing_the_package_imports_nothing_else() -> None:
    code = "import sys, gocaas.cache; print(*sorted(m for m in sys.modules if m.startswith('gocaas')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["gocaas", "gocaas.cache"]
