"""What the machine actually gives us: CPUs (cgroup quota and affinity, not just the host's count)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_cpu_limit() -> float | None:
    # cgroup v2: "max 100000" or "200000 100000"
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        quota, period = v2.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    # cgroup v1
    try:
        quota_v1 = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_v1 = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_v1 > 0 and period_v1 > 0:
            return quota_v1 / period_v1
    except (OSError, ValueError):
        pass
    return None


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota when there is one."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def _own_cgroup_dir(controller: str) -> Path | None:
    """This process's cgroup directory for a v1 controller, or the v2 unified directory ("")."""
    from gocaas.go.cgroups import own_dir

    found = own_dir(controller)
    return Path(found) if found is not None else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_memory_headroom() -> int | None:
    """Bytes left under this process's cgroup memory limit (v1 or v2), if one is set."""
    v1 = _own_cgroup_dir("memory")
    if v1 is not None:
        limit, usage = _read_int(v1 / "memory.limit_in_bytes"), _read_int(v1 / "memory.usage_in_bytes")
        if limit is not None and usage is not None and limit < 1 << 60:
            return max(0, limit - usage)
    v2 = _own_cgroup_dir("")
    if v2 is not None:
        limit, usage = _read_int(v2 / "memory.max"), _read_int(v2 / "memory.current")
        if limit is not None and usage is not None:
            return max(0, limit - usage)
    return None


def _meminfo(field: str) -> int:
    """A /proc/meminfo field in bytes (1 GiB if it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 1 << 30


def total_memory() -> int:
    """Bytes of memory this process's processes may use in all: MemTotal, capped by a cgroup limit."""
    v1, v2 = _own_cgroup_dir("memory"), _own_cgroup_dir("")
    limits = [_read_int(v1 / "memory.limit_in_bytes")] if v1 is not None else []
    limits += [_read_int(v2 / "memory.max")] if v2 is not None else []
    return min([_meminfo("MemTotal"), *(limit for limit in limits if limit is not None)])


def available_memory() -> int:
    """Bytes we can use now: MemAvailable, capped by the cgroup limit's headroom when there is one."""
    available = _meminfo("MemAvailable")
    headroom = _cgroup_memory_headroom()
    return min(available, headroom) if headroom is not None else available


# What one concurrently building-and-running test package needs at worst here (a link of a large test
# binary plus the binary itself); bounds -p when memory, not CPUs, is the scarce resource.
MEMORY_PER_TEST_PACKAGE = 768 * 1024 * 1024


def plan_test_parallelism(cpus: int, memory: int) -> tuple[int, int]:
    """(-p, -parallel) for go test.

    -p: test packages built and run at once: the CPUs, as many as memory holds. One more than the CPUs, to
    cover single-threaded links and tests waiting on I/O, was 2% slower over 14 paired cold runs here
    (bench/test_bench.py) and used more CPU: the compiler already runs on more than one core.
    -parallel: t.Parallel tests at once inside one binary; the CPUs.
    """
    by_memory = max(1, memory // MEMORY_PER_TEST_PACKAGE)
    return max(1, min(cpus, by_memory)), max(1, cpus)
