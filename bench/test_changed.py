"""test_bench's "one package changed" rounds: the everyday case of a team's CI, between the cold and warm
extremes. Each round appends a comment to one file of one package (which changes its compiled form, so
go recompiles it and re-runs its tests and its dependents'), then times raw `go test ./...` and the
default `gocaas test` (--shuffle auto: the changed packages shuffled, the rest from go's test cache).

The first round is not timed: after the warm runs, gocaas has answered from its result cache, and its cold
run shuffled everything, so go's test cache holds nothing of it yet; a project's second build with a change
runs the unchanged packages once unshuffled, and every later one finds them cached. The timed rounds are
that steady state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build_bench import Contender, Run, _median_of, run_steps

# The file each module target changes: a package in the middle of the generated graph (it has dependents),
# and goldmark's GFM table extension.
GOLDMARK_FILE = "extension/table.go"


def changed_file(name: str, module: Path) -> Path | None:
    """The file to edit in this target's module, or None if there is none to edit."""
    if name.startswith("m") and name[1:].isdigit():
        middle = f"p{int(name[1:]) // 2:04d}"
        path = module / middle / f"{middle}.go"
    elif name == "goldmark":
        path = module / GOLDMARK_FILE
    else:
        return None
    return path if path.is_file() else None


@dataclass
class ChangedRounds:
    file: str  # relative to the module
    raw: list[Run] = field(default_factory=list)
    gocaas: list[Run] = field(default_factory=list)

    @property
    def raw_seconds(self) -> float | None:
        return _median_of(self.raw, lambda r: r.seconds)

    @property
    def gocaas_seconds(self) -> float | None:
        return _median_of(self.gocaas, lambda r: r.seconds)

    def line(self, target: str) -> str:
        raw, gocaas = self.raw_seconds, self.gocaas_seconds
        if raw is None or gocaas is None:
            return f"{target}: one package changed ({self.file}): a run failed"
        return (
            f"{target}: one package changed ({self.file}), median of {len(self.raw)}: raw {raw:.2f}s, "
            f"gocaas test {gocaas:.2f}s ({gocaas / raw:.2f}×); ranges raw "
            f"{min(r.seconds for r in self.raw):.2f}–{max(r.seconds for r in self.raw):.2f}s, gocaas "
            f"{min(r.seconds for r in self.gocaas):.2f}–{max(r.seconds for r in self.gocaas):.2f}s"
        )

    def json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "raw": [r.seconds for r in self.raw],
            "gocaas": [r.seconds for r in self.gocaas],
            "raw_median": self.raw_seconds,
            "gocaas_median": self.gocaas_seconds,
        }


def measure_changed(
    cwd: Path,
    file: Path,
    raw: Contender,
    gocaas: Contender,
    *,
    repeats: int,
    timeout: float,
    progress: Callable[[str, str, Run], None],
) -> ChangedRounds:
    """One untimed priming round, then `repeats` timed ones; raw and gocaas see each change in turn."""
    rounds = ChangedRounds(str(file.relative_to(cwd)))
    for n in range(repeats + 1):
        with file.open("a", encoding="utf-8") as handle:
            handle.write(f"\n// test_bench: change {n}\n")
        for who, contender, runs in (("raw", raw, rounds.raw), ("default", gocaas, rounds.gocaas)):
            run = run_steps(contender.steps(1000 + n), cwd=cwd, env=contender.env, timeout=timeout)
            progress(who, f"changed {n}" if n else "changed (priming)", run)
            if n:
                runs.append(run)
    return rounds
