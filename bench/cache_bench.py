"""The go command's own build cache against `gocaas cacheprog` (GOCACHEPROG over the local Store), in one run.

    python bench/cache_bench.py [--repeats 15] [--packages 100] [--go-p N] [--no-cold] [--no-reference]
                                [--no-remote] [--remote-repeats 5] [--fresh-root DIR]

Rows, each timed with time.perf_counter around the whole go command:

    std cold   go build std: empty GOCACHE  vs  empty cacheprog store (and an empty, unused GOCACHE)
    std warm   go build std again, --repeats times, the sides taking turns in rotating order; median (min)
    m<N> cold  go build ./... of a generated N-package module (bench/genmodule.py), std already warm
    m<N> warm  the same again, --repeats times

Sides: `go` (the go command's own cache), `cacheprog` (gocaas, started the way gocaas starts it:
gocaas.cache.command), in warm rows `resident` (the same with --resident: each go command hands itself to
one resident program that holds the entries in memory, see gocaas/cache/resident.py; started by two
untimed builds before the first warm row; --no-resident leaves it out) and `attached` (the same resident
program, reached through the compiled attacher as gocaas's builds reach it, gocaas/cache/attacher.py: the
go command starts a ~1 ms Go program instead of Python; --no-attacher leaves it out), and in warm rows two
GOCACHEPROGs
written in Go and built here: `go-ref` (REFERENCE below) answers each get from the same store with a
goroutine, reading its files as cacheprog does; `go-mem` (MEMORY_FLOOR) answers from memory, every answer
precomputed from the store before the row and no file touched per get. go-mem is the floor of the protocol
itself: every get is a round trip through a pipe, and the go command's side of it, that the go command's
own cache does not make.
Both sides use GOFLAGS=-trimpath and CGO_ENABLED=0 as gocaas does, offline, with an explicit environment;
cacheprog's per-process stats (GOCAAS_CACHEPROG_STATS) are summed to show what the store served.
Target: warm `go build std` through cacheprog ≤ 1.15 x the go command's own cache (exit status 1 if missed),
judged on `attached` (else `resident`) when it runs (the fastest way gocaas runs the program), with plain
cacheprog's ratio beside.

Remote rows (unless --no-remote), `gocaas cache serve` on loopback in its own process:

    std cold      a third side, `remote`: cacheprog --remote, empty local store and empty server (it uploads)
    std fresh     --remote-repeats times, rotating: `go` (warm GOCACHE, as in std warm); `remote`, a fresh
                  worker: a new, empty local store against the server that the cold run filled (and whose
                  trace it keeps: the fresh worker prefetches, see gocaas/cache/prefetch.py; pass
                  --prog-arg=--no-prefetch for one get at a time); `tar+zstd`: restore a tar+zstd archive
                  of the whole warm GOCACHE into a new directory and build with it, restore and build timed
                  together (how CI caches go); `cp floor`: `cp -r` the server's store into a new directory,
                  then build from it locally (what writing the same files costs, without network or
                  protocol); `write floor`, no build: the same number of bytes written into one new file
                  (what the page cache charges for them at that moment, see bench/README.md). The run
                  directories are removed after the row, not between runs (see Remote._next_dir: deleting
                  thousands of files makes the next creations slow here).
Targets: fresh worker ≤ 3 x warm go; ≥ 10 x faster than cold go; faster than tar+zstd.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from genmodule import generate
from gocaas.cache.attacher import attacher_path, build_attacher, resident_command
from gocaas.cache.command import cacheprog_argv, cacheprog_command, go_quote
from gocaas.cache.wire import hit_response

TARGET = 1.15
FRESH_VS_WARM, COLD_VS_FRESH = 3.0, 10.0
TOKEN = "bench-token"
SRC = Path(__file__).resolve().parent.parent / "src"
STAT_KEYS = ("gets", "hits", "misses", "puts", "errors")

REFERENCE = """\
// A minimal GOCACHEPROG over a gocaas store, read-only, reading its files per get as cacheprog does.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type request struct {
	ID       int64
	Command  string
	ActionID []byte
}

type response struct {
	ID            int64
	KnownCommands []string   `json:",omitempty"`
	Miss          bool       `json:",omitempty"`
	OutputID      []byte     `json:",omitempty"`
	Size          int64      `json:",omitempty"`
	Time          *time.Time `json:",omitempty"`
	DiskPath      string     `json:",omitempty"`
}

func main() {
	dir := os.Args[1]
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	send := func(r *response) { mu.Lock(); enc.Encode(r); out.Flush(); mu.Unlock() }
	send(&response{KnownCommands: []string{"get", "close"}})
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	for {
		var r request
		if dec.Decode(&r) != nil {
			return
		}
		if r.Command == "close" {
			send(&response{ID: r.ID})
			return
		}
		go func(r request) {
			h := hex.EncodeToString(r.ActionID)
			b, err := os.ReadFile(dir + "/actions/default/" + h[:2] + "/" + h)
			f := strings.Fields(string(b))
			if err != nil || len(f) != 4 {
				send(&response{ID: r.ID, Miss: true})
				return
			}
			out, _ := hex.DecodeString(f[1])
			size, _ := strconv.ParseInt(f[2], 10, 64)
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			path := dir + "/objects/" + f[1][:2] + "/" + f[1]
			if st, err := os.Stat(path); err != nil || st.Size() != size {
				send(&response{ID: r.ID, Miss: true})
				return
			}
			t := time.Unix(0, ns)
			send(&response{ID: r.ID, OutputID: out, Size: size, Time: &t, DiskPath: path})
		}(r)
	}
}
"""


MEMORY_FLOOR = """\
// The protocol's floor: a GOCACHEPROG in Go with every answer precomputed in memory (read from a file the
// bench writes from the store before the row, untimed), answered on the reading goroutine. No file is
// touched per get: what is left is the go command's side of the protocol and the pipe round trips.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"strings"
)

func main() {
	answers := map[string]string{}
	data, _ := os.ReadFile(os.Args[1])
	for _, line := range strings.Split(string(data), "\\n") {
		if key, tail, ok := strings.Cut(line, " "); ok {
			answers[key] = tail + "\\n"
		}
	}
	out := bufio.NewWriter(os.Stdout)
	out.WriteString(`{"ID":0,"KnownCommands":["get","close"]}` + "\\n")
	out.Flush()
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadBytes('\\n')
		if err != nil {
			return
		}
		var r struct {
			ID       int64
			Command  string
			ActionID []byte
		}
		if len(line) < 3 || json.Unmarshal(line, &r) != nil {
			continue
		}
		id := strconv.FormatInt(r.ID, 10)
		if r.Command == "close" {
			out.WriteString(`{"ID":` + id + "}\\n")
			out.Flush()
			return
		}
		if tail, ok := answers[hex.EncodeToString(r.ActionID)]; ok {
			out.WriteString(`{"ID":` + id + tail)
		} else {
			out.WriteString(`{"ID":` + id + `,"Miss":true}` + "\\n")
		}
		out.Flush()
	}
}
"""


def base_env(work: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(work / "home"),
        "GOPROXY": "off",
        "GOFLAGS": "-trimpath",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
        "GOENV": "off",
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
        "GOMODCACHE": str(work / "gomodcache"),
    }
    return env | {name: os.environ[name] for name in ("TMPDIR", "LANG", "LC_ALL") if name in os.environ}


class Side:
    def __init__(
        self,
        name: str,
        env: dict[str, str],
        go_flags: list[str],
        stats: Path | None = None,
        *,
        setup: Callable[[], None] | None = None,
        restore: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.env, self.go_flags, self.stats = name, env, go_flags, stats
        self.setup, self.restore = setup, restore  # before each run: untimed; timed with the build
        self.times: dict[str, list[float]] = {}

    def run(self, row: str, args: list[str], cwd: Path) -> None:
        cmd = ["go", args[0], *self.go_flags, *args[1:]]
        if self.setup is not None:
            self.setup()
        start = time.perf_counter()
        if self.restore is not None:
            self.restore()
        proc = subprocess.run(cmd, cwd=cwd, env=self.env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{self.name}: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        self.times.setdefault(row, []).append(seconds)

    def stats_lines(self) -> list[dict[str, int]]:
        if self.stats is None or not self.stats.exists():
            return []
        return [json.loads(line) for line in self.stats.read_text().splitlines()]


class WriteFloor(Side):
    """Not a build: write `size` bytes into one new file in a new directory (1 MiB writes from one reused
    buffer), what putting the fresh worker's objects into the page cache costs at that moment, with no file
    creation, network, hashing or go command. On this VM it swings 10x with the machine's recent memory use:
    see bench/README.md, "The fresh worker and new memory"."""

    def __init__(self, next_dir: Callable[[str], Path], size: Callable[[], int]) -> None:
        super().__init__("write floor", {}, [])
        self.next_dir, self.size = next_dir, size
        self.buffer = memoryview(os.urandom(1 << 20))

    def run(self, row: str, args: list[str], cwd: Path) -> None:
        path = self.next_dir("write-floor")
        path.mkdir(parents=True)
        left = self.size()
        start = time.perf_counter()
        fd = os.open(path / "bytes", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while left > 0:
                left -= os.write(fd, self.buffer[: min(left, len(self.buffer))])
        finally:
            os.close(fd)
        self.times.setdefault(row, []).append(time.perf_counter() - start)


def timed(
    sides: list[Side], row: str, args: list[str], cwd: Path, repeats: int, counted: str = "cacheprog"
) -> dict[str, int]:
    """Run every side `repeats` times, rotating who goes first; return the counted side's mean counters."""
    prog = next(s for s in sides if s.name == counted)
    mark = len(prog.stats_lines())
    for i in range(repeats):
        for side in sides[i % len(sides) :] + sides[: i % len(sides)]:
            side.run(row, args, cwd)
        took = ", ".join(f"{s.name} {s.times[row][-1]:.3f} s" for s in sides)
        print(f"  {row} {i + 1}/{repeats}: {took}", file=sys.stderr)
    lines = prog.stats_lines()[mark:]
    numbers = [key for key, value in (lines[0] if lines else {}).items() if type(value) is int]
    return {
        key: sum(line.get(key, 0) for line in lines) // max(1, len(lines)) for key in numbers or STAT_KEYS
    }


def build_go_prog(work: Path, env: dict[str, str], name: str, source: str) -> Path:
    src = work / name
    src.mkdir(exist_ok=True)
    (src / "go.mod").write_text(f"module gocaas.bench/{name}\n\ngo 1.21\n")
    (src / "main.go").write_text(source)
    exe = src / name
    build_env = env | {"GOCACHE": str(work / "gocache-ref-build")}
    subprocess.run(["go", "build", "-o", str(exe), "."], cwd=src, env=build_env, check=True)
    return exe


def write_answers(store: Path, namespace: str, dest: Path) -> None:
    """For MEMORY_FLOOR: each entry of the namespace as `<action hex> <the get hit response after its ID>`,
    the same fields cacheprog sends."""
    lines = []
    for entry in (store / "actions" / namespace).glob("*/*"):
        fields = entry.read_text().split()
        if len(fields) != 4:
            continue
        out_hex, size, time_ns = fields[1], int(fields[2]), int(fields[3])
        path = store / "objects" / out_hex[:2] / out_hex
        line = hit_response(0, bytes.fromhex(out_hex), size, time_ns, str(path)).decode()
        lines.append(entry.name + " " + line.removeprefix('{"ID":0').rstrip())
    dest.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="warm runs per side (default 15)")
    parser.add_argument("--packages", type=int, default=100, help="generated module size (default 100)")
    parser.add_argument("--go-p", type=int, help="pass -p N to every go build (default: go's, the CPUs)")
    parser.add_argument("--no-cold", action="store_true", help="reuse the caches in --workdir: no cold rows")
    parser.add_argument("--no-reference", action="store_true", help="leave out the Go GOCACHEPROG")
    parser.add_argument("--no-resident", action="store_true", help="leave out cacheprog --resident")
    parser.add_argument("--no-attacher", action="store_true", help="leave out the attached side")
    parser.add_argument("--prog-arg", action="append", default=[], help="extra argument to gocaas cacheprog")
    parser.add_argument("--no-remote", action="store_true", help="leave out the remote rows")
    parser.add_argument("--remote-repeats", type=int, default=5, help="std fresh runs per side (default 5)")
    parser.add_argument("--fresh-root", type=Path,
                        help="where the std fresh runs write (default: in the workdir; e.g. a tmpfs to see "
                        "what the disk costs)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="keep caches and the module here (default: a temp dir)")
    parser.add_argument("--json-out", type=Path, help="also write every timing as JSON")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gocaas-cache-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return bench(args, work.resolve())
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path) -> int:
    version = subprocess.run(["go", "version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"{version}, {os.cpu_count()} CPUs, workdir {work}", file=sys.stderr)
    (work / "home").mkdir(exist_ok=True)
    store, env, flags = work / "store", base_env(work), ["-p", str(args.go_p)] if args.go_p else []
    go = Side("go", env | {"GOCACHE": str(work / "gocache")}, flags)
    prog_env = env | {"GOCACHE": str(work / "gocache-unused"), "GOCAAS_CACHEPROG_STATS": str(work / "stats")}
    prog = Side("cacheprog", prog_env | {"GOCACHEPROG": cacheprog_command(store, extra=args.prog_arg)}, flags)
    prog.stats = work / "stats"
    print(f"GOCACHEPROG={prog.env['GOCACHEPROG']}", file=sys.stderr)
    warm_sides = [go, prog]
    # a short runtime directory: a socket's path has at most 107 bytes
    runtime = None if args.no_resident else Path(tempfile.mkdtemp(prefix="cbrt", dir="/tmp"))
    if runtime is not None:
        resident_prog = cacheprog_command(store, extra=[*args.prog_arg, "--resident"])
        resident_env = {"GOCACHEPROG": resident_prog, "XDG_RUNTIME_DIR": str(runtime)}
        resident_env["GOCAAS_CACHEPROG_STATS"] = str(work / "stats-resident")
        warm_sides.append(Side("resident", prog_env | resident_env, flags))
        if not args.no_attacher:
            go_bin = Path(shutil.which("go") or "go")
            attacher = build_attacher(go_bin, attacher_path(work / "helpers"), work / "gocache-attacher")
            argv = cacheprog_argv(store, extra=[*args.prog_arg, "--resident"])
            attached = go_quote(resident_command(attacher, argv, prog_env | resident_env))
            print(f"attached: GOCACHEPROG={attached}", file=sys.stderr)
            warm_sides.append(Side("attached", prog_env | resident_env | {"GOCACHEPROG": attached}, flags))
    answers = work / "answers"
    if not args.no_reference:
        ref = build_go_prog(work, env, "go-ref", REFERENCE)
        warm_sides.append(Side("go-ref", prog_env | {"GOCACHEPROG": f"{ref} {store}"}, flags))
        floor = build_go_prog(work, env, "go-mem", MEMORY_FLOOR)
        warm_sides.append(Side("go-mem", prog_env | {"GOCACHEPROG": f"{floor} {answers}"}, flags))
    module = generate(work / f"m{args.packages}", args.packages, overwrite=True)
    counters: dict[str, dict[str, int]] = {}
    remote = None if args.no_remote else Remote(work, args, env, flags)
    try:
        cold_sides = [go, prog] + ([remote.side] if remote and not args.no_cold else [])
        if not args.no_cold:
            for path in (work / "gocache", work / "gocache-unused", store):
                shutil.rmtree(path, ignore_errors=True)
            print("  std cold (a minute or more) ...", file=sys.stderr)
            counters["std cold"] = timed(cold_sides, "std cold", ["build", "std"], work, 1)
            if remote:
                counters["std cold remote"] = remote.last_counters()
        write_answers(store, "default", answers)
        if runtime is not None:  # the first starts the resident program, the second is its first go command
            timed([warm_sides[2]], "resident start", ["build", "std"], work, 2, counted="resident")
        counters["std warm"] = timed(warm_sides, "std warm", ["build", "std"], work, args.repeats)
        if remote:
            remote.fresh_row(go, work, counters)
    finally:
        if remote:
            remote.stop()
    try:
        return bench_module(args, work, module, warm_sides, counters, remote, version)
    finally:
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)  # its resident program ends when its socket is gone


def bench_module(
    args: argparse.Namespace,
    work: Path,
    module: Path,
    warm_sides: list[Side],
    counters: dict[str, dict[str, int]],
    remote: Remote | None,
    version: str,
) -> int:
    go, prog = warm_sides[:2]
    m = f"m{args.packages}"
    store, answers = work / "store", work / "answers"
    if not args.no_cold:
        counters[f"{m} cold"] = timed([go, prog], f"{m} cold", ["build", "./..."], module, 1)
    else:
        timed([go, prog], "warm-up", ["build", "./..."], module, 1)
    write_answers(store, "default", answers)
    counters[f"{m} warm"] = timed(warm_sides, f"{m} warm", ["build", "./..."], module, args.repeats)
    local_rows = {row: c for row, c in counters.items() if row not in ("std cold remote", "std fresh")}
    status = report(args, version, warm_sides, local_rows)
    if remote:
        status |= remote.report(go, prog, counters, args)
    return status


def report(
    args: argparse.Namespace, version: str, sides: list[Side], counters: dict[str, dict[str, int]]
) -> int:
    go, extra = sides[0], sides[2:]  # go-ref, go-mem: warm rows only
    print(f"\n{version}, {os.cpu_count()} CPUs, -p {args.go_p or 'default'}, medians (min) in seconds")
    head = f"{'row':<10} {'go':>14} {'cacheprog':>14} {'ratio':>6}"
    head += "".join(f" {s.name:>14} {'ratio':>6}" for s in extra) + (f" {'prog/ref':>8}" if extra else "")
    print(head + "   cacheprog requests/run")
    result: dict[str, object] = {"go_version": version, "target": TARGET, "go_p": args.go_p, "rows": {}}
    std_ratio = plain_ratio = 0.0
    names = {s.name for s in sides}
    fastest = next((name for name in ("attached", "resident") if name in names), "cacheprog")
    judged = {"attached": "the attacher to cacheprog --resident", "resident": "cacheprog --resident"}.get(
        fastest, "cacheprog"
    )
    for row, c in counters.items():
        med = {s.name: statistics.median(s.times[row]) for s in sides if row in s.times}
        cell = {s.name: f"{med[s.name]:.3f} ({min(s.times[row]):.3f})" for s in sides if row in s.times}
        c = {key: c.get(key, 0) for key in STAT_KEYS}
        ratio = med["cacheprog"] / med["go"]
        if row == "std warm":
            plain_ratio = ratio
            std_ratio = med[fastest] / med["go"]
        line = f"{row:<10} {cell['go']:>14} {cell['cacheprog']:>14} {ratio:>5.2f}x"
        for side in extra:
            found = side.name in med
            line += f" {cell[side.name]:>14} {med[side.name] / med['go']:>5.2f}x" if found else " " * 22
        if "go-ref" in med:
            line += f" {med['cacheprog'] / med['go-ref']:>7.2f}x"
        elif extra:
            line += " " * 9
        print(f"{line}   {c['gets']} gets ({c['hits']} hits), {c['puts']} puts")
        times = {s.name: s.times[row] for s in sides if row in s.times}
        result["rows"][row] = {"seconds": times, "ratio_median": ratio, "cacheprog_stats": c}  # type: ignore[index]
    verdict = "PASS" if std_ratio <= TARGET else "FAIL"
    print(f"\ntarget: warm go build std through {judged} ≤ {TARGET:.2f}x the go command's own cache: "
          f"{std_ratio:.2f}x → {verdict}")  # fmt: skip
    if judged != "cacheprog":
        print(f"        cacheprog (a program started per go command): {plain_ratio:.2f}x")
    warm_go = statistics.median(go.times["std warm"])
    for side, what in (("go-mem", "the protocol's floor: every answer in memory, in Go"),
                       ("go-ref", "the same store read per get, in Go")):  # fmt: skip
        found = next((s for s in extra if s.name == side), None)
        if found is not None:
            print(f"        {side} ({what}): {statistics.median(found.times['std warm']) / warm_go:.2f}x")
    result["verdict"] = verdict
    result["judged"] = judged
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    args.result = result
    return 0 if verdict == "PASS" else 1


class Remote:
    """`gocaas cache serve` in its own process, a cacheprog --remote side, and the tar+zstd side."""

    def __init__(self, work: Path, args: argparse.Namespace, env: dict[str, str], flags: list[str]) -> None:
        self.work, self.local, self.server_store = work, work / "remote-local", work / "remote-store"
        self.repeats = args.remote_repeats
        if not args.no_cold:
            shutil.rmtree(self.server_store, ignore_errors=True)
        elif not (self.server_store / "actions").exists():
            self.server_store = work / "store"  # --no-cold with no earlier remote run: serve the warm store
        server_env = os.environ | {"PYTHONPATH": str(SRC), "GOCAAS_CACHE_TOKEN": TOKEN}
        argv = [sys.executable, "-m", "gocaas.cache.server", "--listen", "127.0.0.1:0", "--max-size", "0"]
        self.proc = subprocess.Popen(
            [*argv, "--dir", str(self.server_store)], env=server_env, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "listening on " not in line:
            sys.exit(f"gocaas cache serve did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split("listening on ")[1].split(",")[0]
        print(f"remote: {self.url} over {self.server_store}", file=sys.stderr)
        stats = work / "remote-stats"
        extra = self.remote_extra = [*args.prog_arg, "--remote", self.url]
        self.prog_extra = args.prog_arg
        self.run_no, self.fresh_dirs, self.fresh_row_running = 0, list[Path](), False
        # This run's own directory under the fresh root: a killed earlier run's has the same names.
        self.fresh_base = args.fresh_root or work / "fresh-runs"
        self.fresh_root = self.fresh_base / f"run-{os.getpid()}-{time.time_ns()}"
        prog_env = env | {"GOCACHE": str(work / "gocache-unused"), "GOCAAS_CACHEPROG_STATS": str(stats)}
        prog_env |= {"GOCAAS_CACHE_TOKEN": TOKEN, "GOCACHEPROG": cacheprog_command(self.local, extra=extra)}
        self.side = Side("remote", prog_env, flags, stats, setup=self._empty_local)
        self.cp_dir = work / "cp-local"  # the disk's floor: the server's store copied in, then a local build
        cp_env = prog_env | {"GOCACHEPROG": cacheprog_command(self.cp_dir, extra=args.prog_arg)}
        cp_env["GOCAAS_CACHEPROG_STATS"] = str(work / "cp-stats")
        self.cp = Side("cp floor", cp_env, flags, setup=self._empty_cp, restore=self._copy_store)
        self.tar_dir, self.archive = work / "restore", work / "gocache.tar.zst"
        self.tar = Side("tar+zstd", env | {"GOCACHE": str(self.tar_dir / "gocache")}, flags,
                        setup=self._empty_restore, restore=self._restore)  # fmt: skip
        self.write_floor = WriteFloor(self._next_dir, self._object_bytes)

    # Each fresh run gets new, empty directories, and all of them are removed only after the row: on this
    # VM (ext4 mounted with discard), creating files within seconds of deleting thousands costs up to ~1 ms
    # each instead of ~20 µs, which would charge every fresh side for the previous run's cleanup.
    def _next_dir(self, name: str) -> Path:
        self.run_no += 1
        path = self.fresh_root / f"{name}-{self.run_no}"
        self.fresh_dirs.append(path)
        return path

    def _empty_local(self) -> None:
        if self.fresh_row_running:
            self.local = self._next_dir("remote-local")
            self.side.env["GOCACHEPROG"] = cacheprog_command(self.local, extra=self.remote_extra)
        else:
            shutil.rmtree(self.local, ignore_errors=True)

    def _object_bytes(self) -> int:
        """What a fresh worker downloads: the objects of the server's store (the cold run's, all used)."""
        return sum(f.stat().st_size for f in (self.server_store / "objects").glob("*/*"))

    def _empty_cp(self) -> None:
        self.cp_dir = self._next_dir("cp-local")
        self.cp.env["GOCACHEPROG"] = cacheprog_command(self.cp_dir, extra=self.prog_extra)

    def _copy_store(self) -> None:
        subprocess.run(["cp", "-r", str(self.server_store), str(self.cp_dir)], check=True)

    def _empty_restore(self) -> None:
        self.tar_dir = self._next_dir("restore")
        self.tar_dir.mkdir(parents=True)
        self.tar.env["GOCACHE"] = str(self.tar_dir / "gocache")

    def _restore(self) -> None:
        if shutil.which("zstd"):
            unzstd = subprocess.Popen(["zstd", "-d", "-q", "-c", str(self.archive)], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-C", str(self.tar_dir), "-xf", "-"], stdin=unzstd.stdout, check=True)
            if unzstd.wait() != 0:
                sys.exit("zstd -d failed")
            return
        import tarfile

        import zstandard  # pip install zstandard, when the zstd command is missing

        with (
            self.archive.open("rb") as f,
            zstandard.ZstdDecompressor().stream_reader(f) as z,
            tarfile.open(fileobj=z, mode="r|") as archive,
        ):
            archive.extractall(self.tar_dir, filter="tar")

    def _make_archive(self) -> None:
        self.archive.unlink(missing_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(self.work), "-cf", "-", "gocache"], stdout=subprocess.PIPE)
        if shutil.which("zstd"):
            subprocess.run(["zstd", "-q", "-T0", "-3", "-o", str(self.archive)], stdin=tar.stdout, check=True)
        else:
            import zstandard

            with self.archive.open("wb") as f:
                zstandard.ZstdCompressor(level=3, threads=-1).copy_stream(tar.stdout, f)
        tar.wait()

    def last_counters(self) -> dict[str, int]:
        lines = self.side.stats_lines()
        return lines[-1] if lines else {}

    def fresh_row(self, go: Side, work: Path, counters: dict[str, dict[str, int]]) -> None:
        self._make_archive()
        mb = self.archive.stat().st_size / 1e6
        print(f"  std fresh: archive {mb:.1f} MB, {self.archive}", file=sys.stderr)
        sides = [go, self.side, self.tar, self.cp, self.write_floor]
        self.fresh_row_running = True
        try:
            counters["std fresh"] = timed(sides, "std fresh", ["build", "std"], work, self.repeats, "remote")
        finally:
            self.fresh_row_running = False
            shutil.rmtree(self.fresh_base, ignore_errors=True)  # a killed earlier run's directories too

    def report(
        self, go: Side, prog: Side, counters: dict[str, dict[str, int]], args: argparse.Namespace
    ) -> int:
        med, row = statistics.median, "std fresh"
        warm, fresh, tar = (med(side.times[row]) for side in (go, self.side, self.tar))
        cold = go.times["std cold"][0] if "std cold" in go.times else None
        rows = [("warm go, default GOCACHE", go.times[row])]
        if cold is not None:
            rows.append(("cold go, empty GOCACHE", go.times["std cold"]))
        rows += [
            ("fresh worker + warm remote", self.side.times[row]),
            ("tar+zstd restore + build", self.tar.times[row]),
            ("floor: cp -r the server's store + build", self.cp.times[row]),
            (f"write {self._object_bytes() / 1e6:.0f} MB to a new file, no go", self.write_floor.times[row]),
        ]
        if cold is not None:
            rows += [("cold cacheprog, local only", prog.times["std cold"])]
            rows += [("cold cacheprog --remote (uploading)", self.side.times["std cold"])]
        print(f"\nremote tier, go build std on loopback, medians (min) of {len(self.side.times[row])} runs:")
        for name, times in rows:
            print(f"  {name:<40} {med(times):8.3f} ({min(times):.3f})")
        c, up = counters[row], counters.get("std cold remote", {})
        print(f"  fresh worker, per run: {c.get('gets', 0)} gets, {c.get('remote_hits', 0)} remote hits, "
              f"{c.get('remote_bytes_down', 0) / 1e6:.1f} MB down, {c.get('misses', 0)} misses, "
              f"{c.get('remote_errors', 0)} remote errors, {c.get('remote_requests', 0)} requests, "
              f"{c.get('prefetched', 0)} objects prefetched")  # fmt: skip
        if up:
            mb_up = up.get("remote_bytes_up", 0) / 1e6
            print(f"  cold run with the remote: {up.get('uploads', 0)} uploads, {mb_up:.1f} MB up, "
                  f"{up.get('upload_dropped', 0)} dropped, {up.get('traces_sent', 0)} trace")  # fmt: skip
        checks = [(f"fresh worker ≤ {FRESH_VS_WARM:g}x warm go", fresh / warm, fresh / warm <= FRESH_VS_WARM)]
        if cold is not None:
            checks += [
                (
                    f"fresh worker ≥ {COLD_VS_FRESH:g}x faster than cold",
                    cold / fresh,
                    cold >= COLD_VS_FRESH * fresh,
                )
            ]
        checks += [("fresh worker faster than tar+zstd restore + build", tar / fresh, fresh < tar)]
        for name, ratio, ok in checks:
            print(f"target: {name}: {ratio:.2f}x → {'PASS' if ok else 'FAIL'}")
        result = getattr(args, "result", None)
        if args.json_out and result is not None:
            result["remote"] = {"seconds": dict(rows), "fresh_stats": c, "cold_upload_stats": up}
            result["remote"]["checks"] = [{"target": n, "ratio": r, "pass": ok} for n, r, ok in checks]
            args.json_out.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if all(ok for _, _, ok in checks) else 1

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


if __name__ == "__main__":
    sys.exit(main())
