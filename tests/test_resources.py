"""What gocaas takes from the machine for go test: -p and -parallel from the CPUs and the memory."""

from __future__ import annotations

import os

from gocaas.resources import (
    MEMORY_PER_TEST_PACKAGE,
    available_cpus,
    available_memory,
    plan_test_parallelism,
)


def test_p_is_the_cpus_unless_memory_holds_fewer_packages() -> None:
    plenty = 64 * MEMORY_PER_TEST_PACKAGE
    assert plan_test_parallelism(4, plenty) == (4, 4)
    assert plan_test_parallelism(8, 3 * MEMORY_PER_TEST_PACKAGE) == (3, 8), "memory bounds -p, not -parallel"
    assert plan_test_parallelism(2, MEMORY_PER_TEST_PACKAGE // 2) == (1, 2), "always at least one"
    assert plan_test_parallelism(1, plenty) == (1, 1)


def test_this_machine() -> None:
    cpus = available_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    assert cpus <= len(os.sched_getaffinity(0))
    assert available_memory() > 0
    p, parallel = plan_test_parallelism(cpus, available_memory())
    assert 1 <= p <= cpus and parallel == cpus
