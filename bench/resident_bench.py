"""Warm `gocaas build` with and without the resident cache program and the compiled attacher, in one run.

    python bench/resident_bench.py [--module examples/multi] [--runs 10] [--daemon on|off] [--home DIR]

Sides: `attached` (the defaults: a resident program, reached through the compiled attacher,
gocaas/cache/attacher.py), `resident` (cache_attacher off: Python's program hands over), `off`
(cache_resident off, cache_attacher off: a Python program serves each go command, as before both). All
build the same module with --no-reuse (so go runs) over one data directory, warmed first by one untimed
build each (the first also starts the resident program and the attacher's build, which is waited for);
then --runs builds per side, taking turns in rotating order. Prints medians (min) and each side against
`off`. With --daemon on, every build goes through the gocaas daemon (started by the first build, stopped at
the end), as a user's second command does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", type=Path, default=ROOT / "examples" / "multi")
    parser.add_argument("--runs", type=int, default=10, help="timed builds per side (default 10)")
    parser.add_argument("--daemon", choices=("on", "off"), default="off", help="through the gocaas daemon")
    parser.add_argument(
        "--home", type=Path, help="the data directory (default: a new one, so the warm-up is cold)"
    )
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="gocaas-resident-bench-"))
    runtime = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))  # short: a socket path has at most 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCAAS_") and k != "CI"}
    env |= {"GOCAAS_HOME": str(home), "GOCAAS_DAEMON": args.daemon, "XDG_RUNTIME_DIR": str(runtime)}
    gocaas = [sys.executable, "-m", "gocaas"]
    command = [*gocaas, "build", str(args.module), "--no-reuse", "--out", str(home / "out")]
    settings = {
        "attached": {"GOCAAS_CACHE_RESIDENT": "on", "GOCAAS_CACHE_ATTACHER": "true"},
        "resident": {"GOCAAS_CACHE_RESIDENT": "on", "GOCAAS_CACHE_ATTACHER": "false"},
        "off": {"GOCAAS_CACHE_RESIDENT": "off", "GOCAAS_CACHE_ATTACHER": "false"},
    }
    sides: dict[str, list[float]] = {side: [] for side in settings}
    names = list(settings)
    try:
        for side in names:
            subprocess.run(command, env=env | settings[side], capture_output=True, check=True)
        wait_for_attacher(home / "helpers")
        for i in range(args.runs):
            for side in names[i % len(names) :] + names[: i % len(names)]:
                start = time.perf_counter()
                subprocess.run(command, env=env | settings[side], capture_output=True, check=True)
                sides[side].append(time.perf_counter() - start)
            took = ", ".join(f"{side} {sides[side][-1]:.3f} s" for side in names)
            print(f"  {i + 1}/{args.runs}: {took}", file=sys.stderr)
    finally:
        if args.daemon == "on":
            subprocess.run([*gocaas, "daemon", "stop"], env=env, capture_output=True, check=False)
        subprocess.run([*gocaas, "cache", "residents", "--stop"], env=env, capture_output=True, check=False)
    median = {side: statistics.median(times) for side, times in sides.items()}
    print(f"warm gocaas build {args.module.name} --no-reuse, daemon {args.daemon}, {args.runs} runs per side")
    for side, times in sides.items():
        vs = f"   {median[side] / median['off']:.3f} of off" if side != "off" else ""
        print(f"  {side:<9} {median[side]:.3f} s (min {min(times):.3f}){vs}")
    return 0


def wait_for_attacher(helpers: Path, timeout: float = 300.0) -> None:
    """Until the attacher that the first build started building is there (or its build failed)."""
    deadline = time.monotonic() + timeout
    while any(helpers.glob("*.building")) or not any(helpers.glob("gocaas-attach-*")):
        failed = [p for p in helpers.glob("*.building") if p.stat().st_size]
        if failed or time.monotonic() > deadline:
            raise SystemExit(f"no attacher in {helpers}: {failed[0].read_text() if failed else 'timed out'}")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
