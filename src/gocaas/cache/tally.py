"""Adding up the cache program's per-process stats lines (one per go command) into totals: per build for
the report, over every build for `gocaas cache stats`. gocaas adds a line of its own for a go command it
ran again without the cache program, after that program failed (stages/gocmd.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from gocaas.cache.stats import COUNTERS, REMOTE_COUNTERS


def tally(paths: Iterable[Path]) -> dict[str, int]:
    totals = dict.fromkeys((*COUNTERS, *REMOTE_COUNTERS), 0)
    totals["go_commands"] = totals["refills"] = totals["bypasses"] = totals["resident_served"] = 0
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed process
            if row.get("bypassed") is True:
                totals["bypasses"] += 1
                continue
            totals["go_commands"] += 1
            totals["refills"] += row.get("refill") is True  # re-run over a cache that looked damaged
            totals["resident_served"] += row.get("resident") is True  # by a resident program (resident.py)
            for name, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool) and name in totals:
                    totals[name] += value
    return totals


def record_bypass(path: Path) -> None:
    """Add to a build's stats lines: a go command ran again without the cache program, which failed it."""
    with path.open("a", encoding="utf-8") as lines:
        lines.write(json.dumps({"bypassed": True}) + "\n")
