"""run_command keeps a bounded copy of what a command prints and still streams every line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gocaas.go import runner

PRINT_LINES = """import sys
for i in range(2000):
    print(f"line {i:04d} " + "x" * 90)
    print("err", file=sys.stderr)
"""


def test_output_past_the_capture_limit_is_streamed_but_not_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "CAPTURE_LIMIT", 10_000)
    streamed: list[str] = []
    result = runner.run_command(
        [sys.executable, "-c", PRINT_LINES],
        env=dict(os.environ),
        cwd=tmp_path,
        timeout=60,
        on_stdout=streamed.append,
    )
    assert result.ok
    assert len(streamed) == 2000 and streamed[-1].startswith("line 1999 "), "the sink sees every line"
    kept = result.stdout.splitlines()
    assert kept[0].startswith("line 0000 ") and len(result.stdout) < 10_000 + 100
    width = len("line 0000 ") + 90 + 1  # 99 whole lines fit in 10,000 characters
    assert kept[-1] == f"[gocaas: {(2000 - 99) * width} more characters of this output were not kept]"
    assert result.stderr == "err\n" * 2000, "each stream has its own limit"
