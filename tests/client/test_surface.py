"""The client's public surface is exactly its `__all__`, and it does not load when other commands run."""

from __future__ import annotations

import subprocess
import sys

import gocaas.client


def test_the_public_surface_is_pinned() -> None:
    assert sorted(gocaas.client.__all__) == [
        "Artifact",
        "Build",
        "BuildOptions",
        "Failure",
        "GocaasClient",
        "LogEnd",
        "LogStream",
        "Packed",
        "ServerBusy",
        "Stage",
        "Submitted",
        "pack_directory",
    ]
    assert all(hasattr(gocaas.client, name) for name in gocaas.client.__all__)


def test_the_cli_imports_httpx_only_for_remote_commands() -> None:
    code = "import sys, gocaas.cli.app; print('httpx' in sys.modules, 'gocaas.client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
