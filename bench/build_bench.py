"""Raw `go build` against `gocaas build` on the same generated modules, cold and warm, in one run.

    python bench/build_bench.py [--sizes 10,100,1000] [--repeats 3] [--raw-only] [--keep]

For each size a module is generated with bench/genmodule.py, then four things are timed:

    build     raw: go build -trimpath ./...                      (GOCACHE fresh → cold, same again → warm)
              gocaas: gocaas build DIR --out OUT --json --no-vet (GOCAAS_HOME fresh → cold, same → warm)
    with vet  raw: go vet -trimpath ./... && go build -trimpath ./...
              gocaas: gocaas build DIR --out OUT --json

Warm figures are the median of --repeats runs; raw and gocaas warm runs alternate so that both see the
same machine. gocaas's warm runs go through its daemon, its cold runs do not (bench_daemon.py). Ratios are
gocaas / raw. The issue's target is checked at the end: warm 100-package `gocaas build --no-vet` ≤ 1.10 ×
raw warm + 0.3 s. Host target only, no network (GOPROXY=off).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench_daemon import BenchDaemon, daemon_cpu, without_daemon
from genmodule import generate

TARGET_SIZE = 100
TARGET_FACTOR = 1.10
TARGET_SLACK = 0.3

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
if not out.is_terminal:
    out = Console(highlight=False, width=120)

StepsFactory = Callable[[int], list[list[str]]]


@dataclass
class Run:
    seconds: float
    ok: bool
    detail: str = ""
    # CPU seconds (user + system) of the commands and every process they waited for. Steadier than wall
    # time on a shared VM: it shows extra work rather than extra waiting.
    cpu: float | None = None


def _median_of(runs: Sequence[Run], value: Callable[[Run], float | None]) -> float | None:
    values = [value(r) for r in runs]
    if not runs or not all(r.ok for r in runs) or any(v is None for v in values):
        return None
    return statistics.median(v for v in values if v is not None)


@dataclass
class Measurement:
    cold: Run | None = None
    warm: list[Run] = field(default_factory=list)
    cold_again: list[Run] = field(default_factory=list)  # more cold runs, each from empty caches again

    @property
    def ok(self) -> bool:
        return self.cold is not None and self.cold.ok and bool(self.warm) and all(r.ok for r in self.warm)

    @property
    def cold_failed(self) -> bool:
        return any(not r.ok for r in self.colds)

    @property
    def warm_failed(self) -> bool:
        return any(not r.ok for r in self.warm)

    @property
    def colds(self) -> list[Run]:
        return [self.cold, *self.cold_again] if self.cold is not None else []

    @property
    def cold_seconds(self) -> float | None:
        """The median of the cold runs."""
        return _median_of(self.colds, lambda r: r.seconds)

    @property
    def cold_cpu(self) -> float | None:
        return _median_of(self.colds, lambda r: r.cpu)

    @property
    def warm_seconds(self) -> float | None:
        return _median_of(self.warm, lambda r: r.seconds)

    @property
    def warm_cpu(self) -> float | None:
        return _median_of(self.warm, lambda r: r.cpu)

    def error(self) -> str:
        for run in [*self.colds, *self.warm]:
            if run is not None and not run.ok:
                return run.detail
        return ""


@dataclass
class Contender:
    """One side of a comparison: how to make its command list for run n, in which environment."""

    label: str
    steps: StepsFactory
    env: dict[str, str]
    result: Measurement = field(default_factory=Measurement)


@dataclass
class Row:
    size: int
    what: str
    raw: Contender
    gocaas: Contender | None


def run_steps(steps: Sequence[Sequence[str]], *, cwd: Path, env: dict[str, str], timeout: float) -> Run:
    """Run the commands in order (argument lists, no shell), timed together; stop at the first failure."""
    start, cpu_start = time.perf_counter(), _children_cpu() + daemon_cpu(env)

    def done(ok: bool, detail: str = "") -> Run:
        return Run(time.perf_counter() - start, ok, detail, _children_cpu() + daemon_cpu(env) - cpu_start)

    for cmd in steps:
        try:
            proc = subprocess.run(
                list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return done(False, f"{shlex.join(cmd)}: {exc}")
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            return done(False, f"{shlex.join(cmd)} exited {proc.returncode}\n{tail}")
    return done(True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rmtree(path: Path) -> None:
    """Remove a tree, including the read-only files a Go module cache holds."""

    def make_writable(func: Callable[..., Any], target: str, _exc: Any) -> None:
        Path(target).chmod(stat.S_IRWXU)
        func(target)

    if path.exists():
        shutil.rmtree(path, onerror=make_writable)


def raw_env(gocache: Path, gomodcache: Path) -> dict[str, str]:
    """The raw go side's explicit environment: offline, no user go env, host target, cgo off like gocaas."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", str(gocache.parent)),
        "GOCACHE": str(gocache),
        "GOMODCACHE": str(gomodcache),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
        "GOENV": "off",
        "CGO_ENABLED": "0",
    }
    for name in ("TMPDIR", "LANG", "LC_ALL"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def gocaas_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GOCAAS_HOME"] = str(home)
    env["GOCAAS_GOPROXY"] = "off"
    env.pop("GOCAAS_CONFIG", None)
    return env


def default_gocaas_command() -> list[str]:
    """The gocaas script of this interpreter's installation, else `gocaas` on PATH, else the launcher via
    this interpreter. Beside sys.executable first: a PATH entry can be a version manager's shim (pyenv's is
    a chain of bash scripts costing 50-100 ms a call here), which would be timed as gocaas's own."""
    beside = Path(sys.executable).with_name("gocaas")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("gocaas")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from gocaas.launcher import main; sys.exit(main())"]


def check_gocaas(cmd: list[str]) -> str | None:
    """None if `gocaas build --help` works, else why not."""
    try:
        proc = subprocess.run([*cmd, "build", "--help"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{shlex.join(cmd)}: {exc}"
    if proc.returncode != 0:
        return f"{shlex.join(cmd)} build --help exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
    return None


def go_version(go: str) -> str:
    proc = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or proc.stderr.strip()


def build_rows(
    args: argparse.Namespace, workdir: Path, go: str, gocaas_cmd: list[str] | None, daemon: BenchDaemon | None
) -> list[Row]:
    rows: list[Row] = []
    for size in args.sizes:
        module = generate(workdir / "src" / f"m{size}", size, seed=args.seed, overwrite=True)
        outs = workdir / "out" / f"m{size}"
        modcache = workdir / "raw-gomodcache"
        raw_out = ["-o", f"{outs}/raw/"] if args.raw_out else []

        def raw_build(_n: int, raw_out: list[str] = raw_out) -> list[list[str]]:
            return [[go, "build", "-trimpath", *raw_out, "./..."]]

        def raw_vet_build(_n: int, raw_out: list[str] = raw_out) -> list[list[str]]:
            return [[go, "vet", "-trimpath", "./..."], [go, "build", "-trimpath", *raw_out, "./..."]]

        o_flag = "-o OUT/ " if args.raw_out else ""
        build_raw = Contender(
            f"go build -trimpath {o_flag}./...", raw_build, raw_env(workdir / f"gocache-raw-{size}", modcache)
        )
        vet_raw = Contender(
            f"go vet -trimpath ./... && go build -trimpath {o_flag}./...",
            raw_vet_build,
            raw_env(workdir / f"gocache-rawvet-{size}", modcache),
        )
        build_gocaas = vet_gocaas = None
        if gocaas_cmd is not None:
            base = [*gocaas_cmd, "build", str(module)]

            def gocaas_build(n: int, base: list[str] = base, outs: Path = outs) -> list[list[str]]:
                return [
                    [
                        *base,
                        "--out",
                        str(outs / f"gocaas-{n}"),
                        "--json",
                        "--no-vet",
                        "--no-test",
                        *args.gocaas_arg,
                    ]
                ]

            def gocaas_vet_build(n: int, base: list[str] = base, outs: Path = outs) -> list[list[str]]:
                return [
                    [*base, "--out", str(outs / f"gocaas-vet-{n}"), "--json", "--no-test", *args.gocaas_arg]
                ]

            build_gocaas = Contender(
                "gocaas build DIR --out OUT --json --no-vet --no-test",
                gocaas_build,
                daemon.env(gocaas_env(workdir / f"gocaas-home-{size}")) if daemon else {},
            )
            vet_gocaas = Contender(
                "gocaas build DIR --out OUT --json (with vet)",
                gocaas_vet_build,
                daemon.env(gocaas_env(workdir / f"gocaas-home-vet-{size}")) if daemon else {},
            )
        rows.append(Row(size, "build", build_raw, build_gocaas))
        if not args.no_vet_rows:
            rows.append(Row(size, "build + vet", vet_raw, vet_gocaas))
    return rows


def measure_row(row: Row, *, cwd: Path, repeats: int, timeout: float) -> None:
    sides = [c for c in (row.raw, row.gocaas) if c is not None]
    for side in sides:
        side.result.cold = run_steps(side.steps(0), cwd=cwd, env=without_daemon(side.env), timeout=timeout)
        _progress(row, side, "cold", side.result.cold)
    for n in range(1, repeats + 1):
        for side in sides:
            if side.result.cold is None or not side.result.cold.ok:
                continue
            run = run_steps(side.steps(n), cwd=cwd, env=side.env, timeout=timeout)
            side.result.warm.append(run)
            _progress(row, side, f"warm {n}", run)


def _progress(row: Row, side: Contender, phase: str, run: Run) -> None:
    state = f"{run.seconds:7.2f}s" if run.ok else "[red]FAILED[/red]"
    err.print(
        f"  m{row.size:<5} {row.what:<11} {'raw' if side is row.raw else 'gocaas':<7} {phase:<7} {state}"
    )
    if not run.ok:
        err.print(f"[red]{run.detail}[/red]")


def _fmt(seconds: float | None, failed: bool = False) -> str:
    if failed:
        return "[red]failed[/red]"
    return "—" if seconds is None else f"{seconds:.2f}s"


def _ratio(raw: float | None, other: float | None) -> str:
    if raw is None or other is None or raw <= 0:
        return "—"
    return f"{other / raw:.2f}×"


def render(rows: list[Row]) -> Table:
    table = Table(title="go build vs gocaas build (host target; ratio = gocaas / raw)", box=box.SIMPLE_HEAD)
    table.add_column("size", justify="right")
    table.add_column("what")
    for name in ("raw cold", "gocaas cold", "ratio", "raw warm", "gocaas warm", "ratio"):
        table.add_column(name, justify="right")
    for row in rows:
        raw = row.raw.result
        other = row.gocaas.result if row.gocaas is not None else None
        table.add_row(
            str(row.size),
            row.what,
            _fmt(raw.cold_seconds, raw.cold_failed),
            _fmt(other.cold_seconds if other else None, bool(other and other.cold_failed)),
            _ratio(raw.cold_seconds, other.cold_seconds if other else None),
            _fmt(raw.warm_seconds, raw.warm_failed),
            _fmt(other.warm_seconds if other else None, bool(other and other.warm_failed)),
            _ratio(raw.warm_seconds, other.warm_seconds if other else None),
        )
    return table


def legend(rows: list[Row]) -> list[str]:
    """One line per row kind naming the exact commands compared."""
    lines: dict[str, None] = {}
    for row in rows:
        other = f"  vs  {row.gocaas.label}" if row.gocaas is not None else ""
        lines.setdefault(f"{row.what}: {row.raw.label}{other}")
    if any(row.gocaas is not None for row in rows):
        lines.setdefault("gocaas cold: GOCAAS_DAEMON=off (nothing warm); warm: through the daemon")
    return list(lines)


def target_check(rows: list[Row]) -> tuple[str, str]:
    """(PASS | FAIL | SKIPPED, explanation) for: warm 100-package gocaas ≤ 1.10 × raw + 0.3 s."""
    row = next((r for r in rows if r.size == TARGET_SIZE and r.what == "build"), None)
    rule = f"warm {TARGET_SIZE}-package gocaas build ≤ {TARGET_FACTOR:.2f} × raw + {TARGET_SLACK} s"
    if row is None:
        return "SKIPPED", f"{rule}: size {TARGET_SIZE} not measured"
    if row.gocaas is None:
        return "SKIPPED", f"{rule}: gocaas not measured (--raw-only)"
    raw, other = row.raw.result.warm_seconds, row.gocaas.result.warm_seconds
    if raw is None or other is None:
        return "FAIL", f"{rule}: a run failed"
    limit = TARGET_FACTOR * raw + TARGET_SLACK
    verdict = "PASS" if other <= limit else "FAIL"
    return verdict, f"{rule}: gocaas {other:.2f}s vs limit {limit:.2f}s (raw {raw:.2f}s)"


def results_json(rows: list[Row], verdict: str, why: str) -> dict[str, Any]:
    def side(c: Contender | None) -> dict[str, Any] | None:
        if c is None:
            return None
        m = c.result
        return {
            "label": c.label,
            "cold": m.cold_seconds,
            "warm_median": m.warm_seconds,
            "warm": [r.seconds for r in m.warm],
            "ok": m.ok,
            "error": m.error() or None,
        }

    return {
        "rows": [
            {"size": r.size, "what": r.what, "raw": side(r.raw), "gocaas": side(r.gocaas)} for r in rows
        ],
        "target": {"verdict": verdict, "detail": why},
    }


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time raw go build against gocaas build on generated modules."
    )
    parser.add_argument(
        "--sizes", type=parse_sizes, default=[10, 100, 1000], help="e.g. 10,100 (default 10,100,1000)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per measurement; median taken")
    parser.add_argument("--seed", type=int, default=1, help="genmodule seed")
    parser.add_argument("--raw-only", action="store_true", help="time raw go only (no gocaas)")
    parser.add_argument("--no-vet-rows", action="store_true", help="skip the 'with vet' comparison")
    parser.add_argument("--raw-out", action="store_true", help="raw go build writes binaries: -o OUT/ ./...")
    parser.add_argument("--go", default="go", help="the go command for the raw side (default: go on PATH)")
    parser.add_argument("--gocaas", help="the gocaas command, shell-quoted (default: gocaas on PATH)")
    parser.add_argument("--gocaas-arg", action="append", default=[], help="extra argument for gocaas build")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per command")
    parser.add_argument("--workdir", type=Path, help="where modules, caches and outputs go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    go = shutil.which(args.go)
    if go is None:
        err.print(f"[red]go command not found: {args.go}[/red]")
        return 2
    gocaas_cmd: list[str] | None = None
    if not args.raw_only:
        gocaas_cmd = shlex.split(args.gocaas) if args.gocaas else default_gocaas_command()
        problem = check_gocaas(gocaas_cmd)
        if problem:
            err.print(f"[red]gocaas is not usable[/red]: {problem}\n(use --raw-only to time raw go alone)")
            return 2

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gocaas-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    err.print(f"{go_version(go)} · {os.cpu_count()} CPUs · workdir {workdir}")
    if gocaas_cmd is not None:
        err.print(f"gocaas: {shlex.join(gocaas_cmd)}")
    daemon = BenchDaemon(gocaas_cmd) if gocaas_cmd is not None else None
    try:
        if daemon is not None and (problem := daemon.start(os.environ)):
            err.print(f"[red]gocaas daemon start failed[/red]: {problem}")
            return 2
        rows = build_rows(args, workdir, go, gocaas_cmd, daemon)
        for row in rows:
            measure_row(row, cwd=workdir / "src" / f"m{row.size}", repeats=args.repeats, timeout=args.timeout)
    finally:
        if daemon is not None:
            daemon.stop(os.environ)
        if not args.keep and args.workdir is None:
            _rmtree(workdir)

    out.print(render(rows))
    for line in legend(rows):
        out.print(f"  {line}")
    verdict, why = target_check(rows)
    colour = {"PASS": "green", "FAIL": "red"}.get(verdict, "yellow")
    out.print(f"target: [{colour}]{verdict}[/{colour}] — {why}")
    failed = [r for r in rows for c in (r.raw, r.gocaas) if c is not None and not c.result.ok]
    if args.json_out:
        args.json_out.write_text(
            json.dumps(results_json(rows, verdict, why), indent=2) + "\n", encoding="utf-8"
        )
    return 1 if failed or verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
