"""Go cover profiles: parse, merge, write, and turn into statement-coverage percentages; render the HTML view.

A profile is `mode: set|count|atomic` then one line per block,
`example.com/m/pkg/file.go:startLine.startCol,endLine.endCol numStmt count`. The same block may appear many
times (`-coverpkg` makes every test binary report every covered package), so blocks are keyed by position
and merged the way Go's own reader does: OR of the counts in set mode, their sum in count and atomic mode.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gocaas.errors import InfraError
from gocaas.go.runner import run_command

MODES = ("set", "count", "atomic")

# Greedy file part: a file name may itself contain ':' (go's parser also reads the line from the end).
_BLOCK_RE = re.compile(r"^(.+):(\d+)\.(\d+),(\d+)\.(\d+) (\d+) (\d+)$")
_MODE_PREFIX = "mode: "


@dataclass(frozen=True, order=True)
class Block:
    """Where a block is; the key under which repeated reports of one block merge."""

    file: str
    start_line: int
    start_col: int
    end_line: int
    end_col: int


@dataclass(frozen=True)
class Tally:
    statements: int
    count: int


@dataclass
class Profile:
    mode: str
    blocks: dict[Block, Tally] = field(default_factory=dict)

    def add(self, block: Block, tally: Tally) -> None:
        """Record one report of a block, merging with an earlier report of the same block."""
        seen = self.blocks.get(block)
        if seen is None:
            self.blocks[block] = tally
            return
        if seen.statements != tally.statements:
            raise ValueError(
                f"cover profile block {_position(block)} has {seen.statements} statements in one report "
                f"and {tally.statements} in another (profiles of different sources?)"
            )
        count = seen.count | tally.count if self.mode == "set" else seen.count + tally.count
        self.blocks[block] = Tally(seen.statements, count)


def parse_profile(text: str) -> Profile:
    """Read a cover profile. Repeated blocks are merged; a repeated identical mode line (profiles simply
    concatenated) is accepted, a different one is not."""
    profile: Profile | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(_MODE_PREFIX):
            mode = line[len(_MODE_PREFIX) :].strip()
            if mode not in MODES:
                raise ValueError(f"cover profile line {number}: unknown mode {mode!r}")
            if profile is None:
                profile = Profile(mode)
            elif mode != profile.mode:
                raise ValueError(f"cover profile line {number}: mode {mode!r} after mode {profile.mode!r}")
            continue
        if profile is None:
            raise ValueError(f"cover profile line {number}: expected 'mode: set|count|atomic', got {line!r}")
        match = _BLOCK_RE.match(line)
        if match is None:
            raise ValueError(f"cover profile line {number}: not a block: {line!r}")
        file, *numbers = match.groups()
        start_line, start_col, end_line, end_col, statements, count = map(int, numbers)
        profile.add(Block(file, start_line, start_col, end_line, end_col), Tally(statements, count))
    if profile is None:
        raise ValueError("cover profile is empty (no mode line)")
    return profile


def merge_profiles(profiles: Iterable[Profile]) -> Profile:
    """One profile from several (e.g. one per test run or shard), all of the same mode."""
    profiles = list(profiles)
    if not profiles:
        raise ValueError("no cover profiles to merge")
    modes = sorted({p.mode for p in profiles})
    if len(modes) > 1:
        raise ValueError(f"cannot merge cover profiles of different modes: {', '.join(modes)}")
    merged = Profile(modes[0])
    for profile in profiles:
        for block, tally in profile.blocks.items():
            merged.add(block, tally)
    return merged


def format_profile(profile: Profile) -> str:
    lines = [f"{_MODE_PREFIX}{profile.mode}"]
    for block in sorted(profile.blocks):
        tally = profile.blocks[block]
        lines.append(f"{_position(block)} {tally.statements} {tally.count}")
    return "\n".join(lines) + "\n"


def write_profile(profile: Profile, dest: Path) -> None:
    """Write the profile sorted by file and position, so equal profiles are equal bytes."""
    dest.write_text(format_profile(profile), encoding="utf-8")


def coverage_percentages(profile: Profile) -> tuple[float, dict[str, float]]:
    """(total, {package: percent}) of statements covered, rounded to 0.1 as go prints them.

    The arithmetic is `go tool cover -func`'s: each block once (merged by position), its statements counted,
    covered when its count is > 0, 100.0 * covered / total. One difference cannot be seen from a profile
    alone: -func only counts blocks inside function declarations, so blocks of a function literal assigned
    to a package-level variable count here but not there.
    """
    totals: dict[str, list[int]] = {}  # package -> [covered, total]
    for block, tally in profile.blocks.items():
        sums = totals.setdefault(posixpath.dirname(block.file), [0, 0])
        sums[1] += tally.statements
        if tally.count > 0:
            sums[0] += tally.statements
    covered = sum(c for c, _ in totals.values())
    total = sum(t for _, t in totals.values())
    packages = {pkg: _percent(c, t) for pkg, (c, t) in sorted(totals.items())}
    return _percent(covered, total), packages


def _percent(covered: int, total: int) -> float:
    # The same float operations as go's percent(), then %.1f's rounding, so the numbers print alike.
    value = 100.0 * covered / total if total else 0.0
    return float(f"{value:.1f}")


def _position(block: Block) -> str:
    return f"{block.file}:{block.start_line}.{block.start_col},{block.end_line}.{block.end_col}"


def render_html(
    go: Path, env: Mapping[str, str], module_root: Path, profile: Path, dest: Path, timeout: float
) -> None:
    """`go tool cover -html` into `dest`. It runs in the module root because cover finds each profiled
    file's source through `go list`."""
    result = run_command(
        [str(go), "tool", "cover", f"-html={profile}", "-o", str(dest)],
        env=env,
        cwd=module_root,
        timeout=timeout,
        what="go tool cover -html",
    )
    if not result.ok or not dest.is_file():
        detail = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
        raise InfraError(f"go tool cover -html failed: {detail}", kind="coverage")
