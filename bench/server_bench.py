"""Load on `gocaas serve` over loopback: status reads with a full queue, and result-cache hits end to end.

    python bench/server_bench.py [--requests 20000] [--concurrency 2xCPUs] [--repeats 20] [--keep]

Two servers, each with a fresh temporary GOCAAS_HOME, started as `python -m gocaas serve`:

    status reads  `--workers 0` (the API only), queue bounds raised; --builds (1000) git builds queued through
                  POST /v1/builds, then --requests GET /v1/builds/{id} of random queued ids from --concurrency
                  clients at once (a thread per client, each an httpx.Client on one keep-alive
                  connection). Targets: >= 1000 req/s and p99 <= 50 ms, no errors.
    cache hits    `--workers 1`, GOCAAS_GOPROXY=off: upload examples/hello (.tar.gz) and wait for it, then
                  upload the identical archive --repeats times, one after the other, timing from POST sent
                  to the finished view seen (GET ?wait= long-poll). Target: finished <= 50 ms after POST
                  (median), every repeat answered from the result cache (`reused_from` set).

The load generator runs on the same machine as the server: its own CPU time and the server process's are
reported next to the figures, so a saturated generator can be told from a slow server. Not a test: run it
by hand. Servers are always stopped (their whole process group) before it exits.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.server import ServerProcess, module_archive  # noqa: E402

TARGET_RPS = 1000.0
TARGET_P99_MS = 50.0
TARGET_HIT_MS = 50.0
HELLO = REPO / "examples" / "hello"
FINISHED = ("succeeded", "failed", "cancelled")
CLK_TCK = os.sysconf("SC_CLK_TCK")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
if not out.is_terminal:
    out = Console(highlight=False, width=120)


# --- measuring ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process so far, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all CPUs, not idle nor iowait), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK  # guest time is already counted in user


@dataclass
class CpuWindow:
    wall: float = 0.0
    generator: float = 0.0
    server: float = 0.0
    machine_busy: float = 0.0

    def share(self, seconds: float) -> float:
        """seconds as a fraction of one core over the window."""
        return seconds / self.wall if self.wall else 0.0


@contextmanager
def cpu_window(server_pid: int) -> Iterator[CpuWindow]:
    window = CpuWindow()
    start, gen0, srv0, busy0 = time.perf_counter(), own_cpu(), process_cpu(server_pid), machine_busy()
    yield window
    window.wall = time.perf_counter() - start
    window.generator = own_cpu() - gen0
    window.server = process_cpu(server_pid) - srv0
    window.machine_busy = machine_busy() - busy0


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: CpuWindow = field(default_factory=CpuWindow)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q) if self.latencies_ms else None

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": dict(self.errors),
            "seconds": self.seconds,
            "rate": self.rate,
            "p50_ms": self.pct(50),
            "p95_ms": self.pct(95),
            "p99_ms": self.pct(99),
            "max_ms": max(self.latencies_ms) if self.latencies_ms else None,
            "cpu": asdict(self.cpu),
        }


def drive(
    clients: Sequence[httpx.Client],
    requests: Sequence[tuple[str, str, dict[str, Any] | None]],
    *,
    expect: int = 200,
    deadline: float | None = None,
) -> LoadResult:
    """Send `requests` (method, path, JSON body) from one thread per client, each client one keep-alive
    connection, all at once; every answer but `expect` counts as an error. Stops early at `deadline`."""
    result = LoadResult()
    claim = itertools.count()  # next() on a count is atomic under the GIL: each request is sent once
    latencies: list[list[float]] = [[] for _ in clients]
    errors: list[Counter[str]] = [Counter() for _ in clients]
    sent = [0] * len(clients)

    def worker(n: int) -> None:
        client, mine, failed = clients[n], latencies[n], errors[n]
        while (i := next(claim)) < len(requests):
            if deadline is not None and time.perf_counter() > deadline:
                return
            method, path, body = requests[i]
            sent[n] += 1
            start = time.perf_counter()
            try:
                response = client.request(method, path, json=body)
            except httpx.HTTPError as e:
                failed[type(e).__name__] += 1
                continue
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code == expect:
                mine.append(elapsed)
            else:
                failed[f"HTTP {response.status_code}"] += 1
                if sum(failed.values()) <= 2:
                    err.print(f"  {method} {path}: {response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(len(clients))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    result.requests = sum(sent)
    for mine, failed in zip(latencies, errors, strict=True):
        result.latencies_ms.extend(mine)
        result.errors.update(failed)
    return result


@contextmanager
def clients(server: ServerProcess, count: int) -> Iterator[list[httpx.Client]]:
    """`count` clients acting as the admin tenant, each with one keep-alive connection."""
    made = [
        httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.admin_token}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=60,
        )
        for _ in range(count)
    ]
    try:
        yield made
    finally:
        for client in made:
            client.close()


# --- servers --------------------------------------------------------------------------------------------


def server_env(home: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without GOCAAS_*, a fresh data directory and the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCAAS_")}
    env["GOCAAS_HOME"] = str(home)
    env["GOCAAS_CONFIG"] = str(home / "config.toml")  # absent: no user config file
    for name, value in settings.items():
        env[f"GOCAAS_{name.upper()}"] = value
    return env


@contextmanager
def running_server(home: Path, workers: int, **settings: str) -> Iterator[ServerProcess]:
    home.mkdir(parents=True)
    server = ServerProcess(server_env(home, **settings), home, workers=workers)
    try:
        server.start(timeout=120)
        if not server.admin_token:
            raise RuntimeError("the server printed no admin token on first start")
        yield server
    finally:
        server.stop()  # SIGTERM to the process group, SIGKILL if it lingers


def server_log_tail(server: ServerProcess, lines: int = 20) -> str:
    return "\n".join(server.log().strip().splitlines()[-lines:])


# --- part 1: status reads -------------------------------------------------------------------------------


@dataclass
class StatusResult:
    queued: LoadResult
    reads: LoadResult
    floor: LoadResult  # GET /healthz: the framework, a thread hop, no database
    warmup: int
    concurrency: int
    queued_builds: int
    log_tail: str = ""


def status_reads(args: argparse.Namespace, workdir: Path) -> StatusResult:
    limit = str(args.builds + 100)
    with running_server(
        workdir / "status-home",
        0,
        server_max_queued=limit,
        server_max_queued_per_tenant=limit,
    ) as server:
        assert server.process is not None
        pid = server.process.pid
        err.print(f"status reads: server on {server.url} (--workers 0), queueing {args.builds} builds")
        with clients(server, args.concurrency) as pool:
            submits: list[tuple[str, str, dict[str, Any] | None]] = [
                (
                    "POST",
                    "/v1/builds",
                    {"source": {"git_url": f"https://git.example.test/m{i}.git", "ref": "main"}},
                )
                for i in range(args.builds)
            ]
            with cpu_window(pid) as window:
                queued = drive(pool, submits, expect=202)
            queued.cpu = window
            ids = queued_ids(pool[0])
            if len(ids) < args.builds:
                raise RuntimeError(f"only {len(ids)} of {args.builds} builds are queued")
            rng = random.Random(args.seed)

            def gets(n: int) -> list[tuple[str, str, dict[str, Any] | None]]:
                return [("GET", f"/v1/builds/{rng.choice(ids)}", None) for _ in range(n)]

            warmup = min(1000, max(args.concurrency * 10, args.requests // 20))
            err.print(f"status reads: {warmup} warm-up reads, then {args.requests} timed")
            drive(pool, gets(warmup))
            planned = gets(args.requests)
            deadline = time.perf_counter() + args.duration if args.duration else None
            with cpu_window(pid) as window:
                reads = drive(pool, planned, deadline=deadline)
            reads.cpu = window
            floor_requests = max(1, args.requests // 4)
            err.print(f"status reads: {floor_requests} GET /healthz for reference")
            deadline = time.perf_counter() + args.duration / 4 if args.duration else None
            with cpu_window(pid) as window:
                floor = drive(pool, [("GET", "/healthz", None)] * floor_requests, deadline=deadline)
            floor.cpu = window
        result = StatusResult(queued, reads, floor, warmup, args.concurrency, len(ids))
        result.log_tail = server_log_tail(server)
        return result


def queued_ids(client: httpx.Client) -> list[str]:
    """Every queued build id, through GET /v1/builds (pages of 200)."""
    ids: list[str] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"status": "queued", "limit": 200}
        if before:
            params["before"] = before
        response = client.get("/v1/builds", params=params)
        response.raise_for_status()
        page = response.json()
        ids.extend(b["id"] for b in page["builds"])
        before = page["next_before"]
        if not before:
            return ids


# --- part 2: result-cache hits --------------------------------------------------------------------------


@dataclass
class Repeat:
    post_ms: float
    finished_ms: float
    dispatch_ms: float | None  # created_at → started_at
    run_ms: float | None  # started_at → finished_at
    server_ms: float | None  # created_at → finished_at
    status: str
    reused_from: str | None
    polls: int
    stages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CacheResult:
    first_seconds: float = 0.0
    first_status: str = ""
    first_message: str | None = None
    repeats: list[Repeat] = field(default_factory=list)
    log_tail: str = ""

    @property
    def hits(self) -> int:
        return sum(1 for r in self.repeats if r.reused_from and r.status == "succeeded")


def span_ms(view: dict[str, Any], since: str, until: str) -> float | None:
    """The time between two of the view's timestamps, as the server recorded them."""
    try:
        return (
            datetime.fromisoformat(view[until]) - datetime.fromisoformat(view[since])
        ).total_seconds() * 1000
    except (KeyError, TypeError, ValueError):
        return None


def submit_and_wait(client: httpx.Client, archive: bytes, timeout: float) -> tuple[Repeat, dict[str, Any]]:
    start = time.perf_counter()
    response = client.post("/v1/builds", files={"archive": ("module.tar.gz", archive)}, data={"spec": "{}"})
    post_ms = (time.perf_counter() - start) * 1000
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/builds: {response.status_code} {response.text[:300]}")
    submitted = response.json()
    build_id = submitted["build_id"]
    view: dict[str, Any] = {"status": submitted["status"]}
    polls = 0
    deadline = start + timeout
    while view["status"] not in FINISHED:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"build {build_id} did not finish in {timeout:.0f}s")
        polls += 1
        got = client.get(f"/v1/builds/{build_id}", params={"wait": 30})
        if got.status_code != 200:
            raise RuntimeError(f"GET /v1/builds/{build_id}: {got.status_code} {got.text[:300]}")
        view = got.json()
    finished_ms = (time.perf_counter() - start) * 1000
    repeat = Repeat(
        post_ms=post_ms,
        finished_ms=finished_ms,
        dispatch_ms=span_ms(view, "created_at", "started_at"),
        run_ms=span_ms(view, "started_at", "finished_at"),
        server_ms=span_ms(view, "created_at", "finished_at"),
        status=view["status"],
        reused_from=view.get("reused_from"),
        polls=polls,
        stages=view.get("stages") or [],
    )
    return repeat, view


def cache_hits(args: argparse.Namespace, workdir: Path) -> CacheResult:
    archive = module_archive(HELLO)
    result = CacheResult()
    with running_server(workdir / "cache-home", 1, goproxy="off") as server:
        err.print(f"cache hits: server on {server.url} (--workers 1), first build of examples/hello")
        with server.client(server.admin_token) as client:
            first, view = submit_and_wait(client, archive, args.timeout)
            result.first_seconds = first.finished_ms / 1000
            result.first_status = first.status
            result.first_message = view.get("message")
            if first.status != "succeeded":
                result.log_tail = server_log_tail(server)
                return result
            err.print(f"cache hits: first build {first.finished_ms / 1000:.1f} s; {args.repeats} repeats")
            for _ in range(args.repeats):
                repeat, _view = submit_and_wait(client, archive, args.timeout)
                result.repeats.append(repeat)
        result.log_tail = server_log_tail(server)
    return result


# --- report ---------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]FAIL[/]"


def machine_info() -> dict[str, Any]:
    go = shutil.which("go")
    go_version = ""
    if go:
        done = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
        go_version = done.stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "httpx": httpx.__version__,
        "go": go_version,
    }


def report_status(result: StatusResult, checks: list[tuple[str, bool]]) -> None:
    reads, queued = result.reads, result.queued
    table = Table(
        title=f"GET /v1/builds/{{id}}: {result.concurrency} concurrent keep-alive clients, "
        f"{result.queued_builds} builds queued",
        box=box.SIMPLE_HEAVY,
    )
    for name in ("what", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if name == "what" else "right")
    rows = (
        ("POST /v1/builds (queueing)", queued),
        ("GET /v1/builds/{id}", reads),
        ("GET /healthz (reference)", result.floor),
    )
    for what, run in rows:
        table.add_row(
            what,
            str(run.requests),
            str(sum(run.errors.values())),
            f"{run.rate:.0f}",
            ms(run.pct(50)),
            ms(run.pct(95)),
            ms(run.pct(99)),
            ms(max(run.latencies_ms) if run.latencies_ms else None),
        )
    table.add_row("target (GET)", "", "0", f"≥ {TARGET_RPS:.0f}", "", "", f"≤ {TARGET_P99_MS:.0f}", "")
    out.print(table)

    cpu = reads.cpu
    per_request = 1e6 / reads.requests if reads.requests else 0.0
    cpu_table = Table(title="CPU during the timed GETs", box=box.SIMPLE_HEAVY)
    for name in ("process", "CPU s", "cores used", "µs CPU / request"):
        cpu_table.add_column(name, justify="left" if name == "process" else "right")
    other = max(0.0, cpu.machine_busy - cpu.server - cpu.generator)
    for name, seconds in (
        ("server (uvicorn, one process)", cpu.server),
        ("load generator (this script)", cpu.generator),
        ("anything else on the machine", other),
        ("whole machine", cpu.machine_busy),
    ):
        cpu_table.add_row(name, f"{seconds:.2f}", f"{cpu.share(seconds):.2f}", f"{seconds * per_request:.0f}")
    out.print(cpu_table)
    cpus = os.cpu_count() or 1
    if cpu.server:
        ceiling = reads.requests / cpu.server
        out.print(
            f"server CPU per request {cpu.server * per_request:.0f} µs: one full core to itself would serve "
            f"~{ceiling:.0f} req/s (one Python process: its threads share one GIL)"
        )
    floor = result.floor
    if floor.cpu.server and floor.requests:
        out.print(
            f"reference GET /healthz (framework + one thread hop, no database): server "
            f"{1e6 * floor.cpu.server / floor.requests:.0f} µs CPU per request, "
            f"generator {1e6 * floor.cpu.generator / floor.requests:.0f} µs"
        )
    if cpu.share(cpu.generator) > 0.9:
        out.print("[yellow]note:[/] the generator used > 0.9 of a core: it may be what limits throughput")
    if cpu.share(cpu.machine_busy) > 0.9 * cpus:
        out.print(
            f"[yellow]note:[/] the machine's {cpus} CPUs were saturated (server + generator + others): "
            "throughput is a lower bound of what the server does on a machine of its own"
        )
    if cpu.share(other) > 0.25:
        out.print(f"[yellow]note:[/] other processes used {cpu.share(other):.2f} cores during the run")
    if reads.errors:
        out.print(f"[red]errors:[/] {dict(reads.errors)}")
    if queued.errors:
        out.print(f"[red]errors while queueing:[/] {dict(queued.errors)}")

    checks.append((f"GET throughput ≥ {TARGET_RPS:.0f} req/s ({reads.rate:.0f})", reads.rate >= TARGET_RPS))
    p99 = reads.pct(99)
    checks.append((f"GET p99 ≤ {TARGET_P99_MS:.0f} ms ({ms(p99)})", p99 is not None and p99 <= TARGET_P99_MS))
    checks.append((f"GET without errors ({sum(reads.errors.values())})", not reads.errors))


def report_cache(result: CacheResult, checks: list[tuple[str, bool]], repeats: int) -> None:
    out.print(
        f"first build of examples/hello (cold: empty data directory): {result.first_seconds:.2f} s, "
        f"{result.first_status}"
    )
    if result.first_status != "succeeded":
        out.print(f"[red]first build did not succeed:[/] {result.first_message}")
        out.print(result.log_tail)
        checks.append(("first build of examples/hello succeeded", False))
        return
    runs = result.repeats
    table = Table(
        title=f"identical upload again ×{len(runs)}: result-cache hits, one at a time", box=box.SIMPLE_HEAVY
    )
    for name in ("ms", "median", "p95", "max", "min"):
        table.add_column(name, justify="left" if name == "ms" else "right")
    for what, values in (
        ("POST sent → 202 received", [r.post_ms for r in runs]),
        ("POST sent → finished view seen", [r.finished_ms for r in runs]),
        ("server: created_at → finished_at", [r.server_ms for r in runs if r.server_ms is not None]),
        ("  created_at → started_at", [r.dispatch_ms for r in runs if r.dispatch_ms is not None]),
        ("  started_at → finished_at", [r.run_ms for r in runs if r.run_ms is not None]),
    ):
        if values:
            table.add_row(
                what,
                ms(statistics.median(values)),
                ms(percentile(values, 95)),
                ms(max(values)),
                ms(min(values)),
            )
    table.add_row("target (finished, median)", f"≤ {TARGET_HIT_MS:.0f}", "", "", "")
    out.print(table)
    within = sum(1 for r in runs if r.finished_ms <= TARGET_HIT_MS)
    polls = statistics.median(r.polls for r in runs) if runs else 0
    out.print(
        f"cache hits: {result.hits} of {len(runs)} (reused_from set, succeeded); "
        f"{within} of {len(runs)} finished within {TARGET_HIT_MS:.0f} ms; "
        f"median long-polls per build: {polls}"
    )
    if runs and runs[-1].stages:
        shown = ", ".join(
            f"{st['name']} {st['status']}"
            + (f" {st['duration_s'] * 1000:.0f} ms" if st.get("duration_s") is not None else "")
            for st in runs[-1].stages
        )
        out.print(f"stages of the last repeat: {shown}")
    missed = [r for r in runs if not (r.reused_from and r.status == "succeeded")]
    for r in missed[:5]:
        out.print(f"[red]not a cache hit:[/] status {r.status}, reused_from {r.reused_from}")
    median = statistics.median(r.finished_ms for r in runs) if runs else None
    checks.append(
        (
            f"cache hit finished ≤ {TARGET_HIT_MS:.0f} ms after POST, median ({ms(median)})",
            median is not None and median <= TARGET_HIT_MS,
        )
    )
    checks.append(
        (f"every repeat a cache hit ({result.hits}/{repeats})", result.hits == repeats == len(runs))
    )


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000, help="timed GETs (default 20000)")
    parser.add_argument(
        "--duration", type=float, default=None, help="also stop the timed GETs after this many seconds"
    )
    parser.add_argument(
        "--concurrency", type=int, default=2 * cpus, help=f"clients at once (default 2×CPUs = {2 * cpus})"
    )
    parser.add_argument("--builds", type=int, default=1000, help="builds queued before the reads (1000)")
    parser.add_argument("--repeats", type=int, default=20, help="identical uploads answered from the cache")
    parser.add_argument("--seed", type=int, default=1, help="for the random choice of build ids")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one build")
    parser.add_argument("--no-status", action="store_true", help="skip the status-read part")
    parser.add_argument("--no-cache", action="store_true", help="skip the cache-hit part")
    parser.add_argument("--workdir", type=Path, default=None, help="where the data directories go")
    parser.add_argument("--keep", action="store_true", help="keep the data directories (and server logs)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.builds) < 1 or args.repeats < 0:
        parser.error("--requests, --concurrency and --builds must be ≥ 1, --repeats ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    load = ", ".join(f"{v:.2f}" for v in info["load_before"])
    out.print(
        f"machine: {info['cpus']} CPUs, load average before {load} · Python {info['python']} · "
        f"httpx {info['httpx']} · {info['go'] or 'no go on PATH'}"
    )
    out.print(
        f"server and load generator share these {info['cpus']} CPUs; "
        "the generator is this process, a thread per client"
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gocaas-server-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checks: list[tuple[str, bool]] = []
    data: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    code = 0
    try:
        if not args.no_status:
            status = status_reads(args, workdir)
            data["status"] = {
                "queued": status.queued.summary(),
                "reads": status.reads.summary(),
                "healthz": status.floor.summary(),
                "warmup": status.warmup,
                "concurrency": status.concurrency,
                "queued_builds": status.queued_builds,
            }
            report_status(status, checks)
        if not args.no_cache:
            cache = cache_hits(args, workdir)
            data["cache"] = {
                "first_seconds": cache.first_seconds,
                "first_status": cache.first_status,
                "repeats": [asdict(r) for r in cache.repeats],
            }
            report_cache(cache, checks, args.repeats)
    except RuntimeError as e:
        err.print(f"[red]error:[/] {e}")
        code = 2
    finally:
        if args.keep:
            err.print(f"kept {workdir}")
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    out.print(f"load average after: {load_after}")
    for what, ok in checks:
        out.print(f"{verdict(ok)}  {what}")
    data["checks"] = [{"check": what, "ok": ok} for what, ok in checks]
    if args.json_out:
        args.json_out.write_text(json.dumps(data, indent=2, default=str))
    if code == 0 and not all(ok for _, ok in checks):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
