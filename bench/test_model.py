"""test_bench's vocabulary: what it measures (targets, the gocaas variants) and the issue's targets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from build_bench import Contender
from test_changed import ChangedRounds

GOLDMARK = "github.com/yuin/goldmark"
GOLDMARK_VERSION = "v1.8.7"
GOLDMARK_PROXY = "https://proxy.golang.org"
STD_PACKAGES = ("strings", "bytes", "strconv", "sort", "encoding/json")

# What gocaas hands every go command after the modules stage (gocaas.go.env + stages.gocmd).
GOCAAS_GOFLAGS = "-trimpath -buildvcs=false -mod=readonly"

WARM_FACTOR = 1.05  # warm gocaas test --shuffle off ≤ 1.05 × raw warm
COLD_FACTOR = 1.00  # cold gocaas test (defaults) ≤ 1.0 × raw cold
LOAD_WARNING = 0.5  # load average above this × CPUs before or after the run: say the timings are noisy


@dataclass(frozen=True)
class Variant:
    """One way of running gocaas test."""

    key: str
    options: str  # what the table shows after `gocaas test`
    args: tuple[str, ...] = ()
    tiers: str | None = None  # GOCAAS_TEST_TIERS
    cold: bool = True
    warm: bool = True
    home_of: str | None = None  # share another variant's GOCAAS_HOME (then no cold run of its own)
    daemon: bool = True  # warm runs through gocaas's daemon (cold runs never are: bench_daemon.py)

    @property
    def label(self) -> str:
        return f"gocaas test {self.options}".rstrip()


DEFAULT = Variant("default", "")
SHUFFLE_OFF = Variant("shuffle-off", "--shuffle off", ("--shuffle", "off"))
# Warm only, in --shuffle off's data directory: the warm run without gocaas's result cache, i.e. go test.
NO_REUSE = Variant(
    "no-reuse",
    "--shuffle off --no-reuse",
    ("--shuffle", "off", "--no-reuse"),
    cold=False,
    home_of="shuffle-off",
)
# Warm only, in --shuffle off's data directory: each command in its own process, paying Python's start-up
# and imports (~0.17 s) as a first command, GOCAAS_DAEMON=off or CI=true do.
NO_DAEMON = Variant(
    "no-daemon",
    "--shuffle off, no daemon",
    ("--shuffle", "off"),
    cold=False,
    home_of="shuffle-off",
    daemon=False,
)
# Cold only: one package more at once than gocaas's choice (the CPUs).
P_MORE = Variant(
    "p-more",
    f"with -p {(os.cpu_count() or 1) + 1}",
    tiers=f'[{{"name":"unit","p":{(os.cpu_count() or 1) + 1}}}]',
    warm=False,
)


@dataclass
class Side:
    variant: Variant
    contender: Contender
    reports: list[Path] = field(default_factory=list)  # --report of each run, cold first
    last_run: str = "—"  # how the last run got its results, read before the work directory goes
    parallelism: str | None = None  # the -p and -parallel it chose, from its first cold run's log


@dataclass
class Target:
    name: str
    cwd: Path
    raw: Contender
    sides: list[Side] = field(default_factory=list)
    reference: bool = False  # raw only, for the reader's orientation
    problem: str | None = None  # could not be set up (e.g. goldmark not fetched)
    changed: ChangedRounds | None = None  # the "one package changed" rounds (test_changed.py)
