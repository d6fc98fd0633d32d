"""Adding up the cache program's per-process stats lines (one per go command) into totals: per build for
the report, over every build for `gocaas cache stats`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from gocaas.cache.stats import COUNTERS, REMOTE_COUNTERS


def tally(paths: Iterable[Path]) -> dict[str, int]:
    totals = dict.fromkeys((*COUNTERS, *REMOTE_COUNTERS), 0)
    totals["go_commands"] = totals["refills"] = 0
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
            totals["go_commands"] += 1
            totals["refills"] += row.get("refill") is True  # re-run over a cache that looked damaged
            for name, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool) and name in totals:
                    totals[name] += value
    return totals
