"""Warm `gocaas build` with and without the resident cache program (cache_resident on / off), in one run.

    python bench/resident_bench.py [--module examples/multi] [--runs 10] [--daemon on|off] [--home DIR]

Both sides build the same module with --no-reuse (so go runs) over one data directory, warmed first by one
untimed build each (the first also starts the resident program); then --runs builds per side, taking turns
in alternating order. Prints medians (min) and on/off. With --daemon on, every build goes through the gocaas
daemon (started by the first build, stopped at the end), as a user's second command does.
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
    sides: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for side in sides:
            subprocess.run(
                command, env=env | {"GOCAAS_CACHE_RESIDENT": side}, capture_output=True, check=True
            )
        for i in range(args.runs):
            for side in ("on", "off") if i % 2 else ("off", "on"):
                start = time.perf_counter()
                subprocess.run(
                    command, env=env | {"GOCAAS_CACHE_RESIDENT": side}, capture_output=True, check=True
                )
                sides[side].append(time.perf_counter() - start)
            took = f"on {sides['on'][-1]:.3f} s, off {sides['off'][-1]:.3f} s"
            print(f"  {i + 1}/{args.runs}: {took}", file=sys.stderr)
    finally:
        if args.daemon == "on":
            subprocess.run([*gocaas, "daemon", "stop"], env=env, capture_output=True, check=False)
        subprocess.run([*gocaas, "cache", "residents", "--stop"], env=env, capture_output=True, check=False)
    median = {side: statistics.median(times) for side, times in sides.items()}
    print(f"warm gocaas build {args.module.name} --no-reuse, daemon {args.daemon}, {args.runs} runs per side")
    for side, times in sides.items():
        print(f"  cache_resident {side:<3}  {median[side]:.3f} s (min {min(times):.3f})")
    print(f"  on / off  {median['on'] / median['off']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
