"""The gocaas daemon in the benches.

Warm runs go through the daemon, as a user's second command does; cold runs do not, as a first command on
a machine does not (GOCAAS_DAEMON=off), so "cold" means nothing warm at all. Each bench gives gocaas a
private runtime directory (XDG_RUNTIME_DIR), starts the daemon there before the first run
(`gocaas daemon start`) and stops it at the end.

The daemon's forked children do a command's work, and they are not the bench's children, so a run's CPU
time is the bench's children's plus what the daemon and its reaped children used during the run, read
from /proc. Only one command runs at a time, so the difference is that command's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

RUNTIME_ENV = "XDG_RUNTIME_DIR"
_TICKS = os.sysconf("SC_CLK_TCK")


def without_daemon(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, "GOCAAS_DAEMON": "off"}


def daemon_cpu(env: Mapping[str, str]) -> float:
    """CPU seconds so far of the daemons env's commands use, with their reaped children (0 without)."""
    if env.get("GOCAAS_DAEMON") != "on" or not env.get(RUNTIME_ENV):
        return 0.0
    total = 0
    for pid_file in (Path(env[RUNTIME_ENV]) / "gocaas").glob("d-*.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])  # the first line; identity.PidFile
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


class BenchDaemon:
    def __init__(self, gocaas: list[str]) -> None:
        self.gocaas = gocaas
        # short: a Unix socket's path must fit in 108 bytes
        self.runtime = Path(tempfile.mkdtemp(prefix="gb", dir="/tmp"))

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {**env, "GOCAAS_DAEMON": "on", RUNTIME_ENV: str(self.runtime), "GOCAAS_DAEMON_IDLE": "7200"}

    def start(self, env: Mapping[str, str]) -> str | None:
        """None once the daemon serves, else why not."""
        proc = subprocess.run(
            [*self.gocaas, "daemon", "start"], env=self.env(env), capture_output=True, text=True, check=False
        )
        return None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-1000:]

    def stop(self, env: Mapping[str, str]) -> None:
        subprocess.run(
            [*self.gocaas, "daemon", "stop"], env=self.env(env), capture_output=True, timeout=120, check=False
        )
        shutil.rmtree(self.runtime, ignore_errors=True)
