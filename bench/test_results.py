"""test_bench's results: the table, the legend, the target checks and the JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from build_bench import Contender, Measurement, _fmt, _ratio
from test_model import (
    COLD_FACTOR,
    DEFAULT,
    GOCAAS_GOFLAGS,
    SHUFFLE_OFF,
    STD_PACKAGES,
    WARM_FACTOR,
    Side,
    Target,
)


def _report(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def go_cache_state(side: Side) -> str:
    """How the last run got its results: 'reused' (gocaas's result cache) or 'k/n' packages go reported
    (cached)."""
    if not side.reports:
        return "—"
    report = _report(side.reports[-1])
    if report is None:
        return "?"
    if report.get("reused_from"):
        return "reused"
    packages = [
        p for p in (report.get("tests") or {}).get("packages", []) if p["state"] in ("passed", "failed")
    ]
    return f"{sum(bool(p.get('cached')) for p in packages)}/{len(packages)} cached"


def chosen_parallelism(side: Side) -> str | None:
    """The first line of a run's test log: the -p and -parallel gocaas chose. Read right after the first
    cold round: the log lives in the data directory, which a later cold round empties."""
    if not side.reports:
        return None
    report = _report(side.reports[0]) or {}
    for stage in report.get("stages", []):
        if stage.get("name") == "test" and stage.get("log_path"):
            try:
                return Path(stage["log_path"]).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError):
                return None
    return None


def legend(parallelism: str | None) -> list[str]:
    std = " ".join(STD_PACKAGES)
    lines = [
        f"raw: go test ./... (std row: go test {std}), go's default -p,",
        f"     GOFLAGS='{GOCAAS_GOFLAGS}' CGO_ENABLED=0 GOPROXY=off; cold = fresh GOCACHE",
        "gocaas: gocaas test DIR --out OUT --json --report R [options]; cold = fresh GOCAAS_HOME per row",
        "     and GOCAAS_DAEMON=off; warm = through the daemon (its CPU counted), except 'no daemon'",
        "     (--no-reuse, no daemon: warm only, in --shuffle off's GOCAAS_HOME;",
        "     -p CPUs+1: GOCAAS_TEST_TIERS, cold only)",
    ]
    if parallelism:
        lines.append(f"gocaas chose: {parallelism}")
    lines.append(
        "last run: 'reused' = gocaas's result cache answered (no go run); 'k/n cached' = go's test cache"
    )
    return lines


def render(targets: list[Target]) -> Table:
    table = Table(title="go test vs gocaas test (ratio = gocaas / raw)", box=box.SIMPLE_HEAD)
    table.add_column("target")
    table.add_column("gocaas test …", no_wrap=True)
    for name in ("raw cold", "gocaas cold", "ratio", "CPU ratio", "raw warm", "gocaas warm", "ratio"):
        table.add_column(name, justify="right")
    table.add_column("last run", no_wrap=True)
    for target in targets:
        raw = target.raw.result
        raw_cold = _fmt(raw.cold_seconds, raw.cold_failed)
        raw_warm = _fmt(raw.warm_seconds, raw.warm_failed)
        if target.problem is not None:
            table.add_row(target.name, "[red]not measured[/red] (see below)", *[""] * 8)
            continue
        if target.reference or not target.sides:
            what = "(raw go only: reference)" if target.reference else "— (not measured)"
            table.add_row(target.name, what, raw_cold, "—", "—", "—", raw_warm, "—", "—", "")
            continue
        for index, side in enumerate(target.sides):
            m = side.contender.result
            table.add_row(
                target.name if index == 0 else "",
                side.variant.options or "(defaults)",
                raw_cold if side.variant.cold else "",
                _fmt(m.cold_seconds, m.cold_failed) if side.variant.cold else "—",
                _ratio(raw.cold_seconds, m.cold_seconds) if side.variant.cold else "—",
                _ratio(raw.cold_cpu, m.cold_cpu) if side.variant.cold else "—",
                raw_warm if side.variant.warm else "",
                _fmt(m.warm_seconds, m.warm_failed) if side.variant.warm else "—",
                _ratio(raw.warm_seconds, m.warm_seconds) if side.variant.warm else "—",
                side.last_run,
            )
        table.add_section()
    return table


def target_checks(targets: list[Target]) -> list[dict[str, Any]]:
    """One check per measured module and rule: warm --shuffle off ≤ 1.05 × raw, cold default ≤ 1.0 × raw."""
    checks = []
    for target in targets:
        if target.reference or target.problem is not None:
            continue
        by_key = {side.variant.key: side for side in target.sides}
        for key, phase, factor in (
            (SHUFFLE_OFF.key, "warm", WARM_FACTOR),
            (DEFAULT.key, "cold", COLD_FACTOR),
        ):
            side = by_key.get(key)
            if side is None:
                continue
            rule = f"{phase} {side.variant.label} ≤ {factor:.2f} × raw {phase}"
            raw_m, other_m = target.raw.result, side.contender.result
            raw = raw_m.warm_seconds if phase == "warm" else raw_m.cold_seconds
            other = other_m.warm_seconds if phase == "warm" else other_m.cold_seconds
            if raw is None or other is None:
                verdict, detail = "FAIL", "a run failed"
            else:
                limit = factor * raw
                verdict = "PASS" if other <= limit else "FAIL"
                detail = f"gocaas {other:.2f}s vs limit {limit:.2f}s (raw {raw:.2f}s, {other / raw:.2f}×)"
                detail += spread(raw_m, other_m, phase)
            checks.append(
                {"target": target.name, "phase": phase, "rule": rule, "verdict": verdict, "detail": detail}
            )
    return checks


def spread(raw: Measurement, gocaas: Measurement, phase: str) -> str:
    """The runs' range on each side and the CPU ratio, so that a verdict inside the noise reads as such."""
    raw_runs, runs = (raw.warm, gocaas.warm) if phase == "warm" else (raw.colds, gocaas.colds)
    raw_cpu, cpu = (raw.warm_cpu, gocaas.warm_cpu) if phase == "warm" else (raw.cold_cpu, gocaas.cold_cpu)
    text = ""
    if len(runs) > 1 and len(raw_runs) > 1:
        text += (
            f"; {len(runs)} runs each, raw {min(r.seconds for r in raw_runs):.2f}–"
            f"{max(r.seconds for r in raw_runs):.2f}s, gocaas {min(r.seconds for r in runs):.2f}–"
            f"{max(r.seconds for r in runs):.2f}s"
        )
    if raw_cpu and cpu:
        text += f"; CPU {cpu:.1f}s vs {raw_cpu:.1f}s ({cpu / raw_cpu:.2f}×)"
    return text


def _side_json(c: Contender) -> dict[str, Any]:
    m = c.result
    return {
        "label": c.label,
        "cold": m.cold_seconds,
        "cold_runs": [r.seconds for r in m.colds],
        "cold_cpu": m.cold_cpu,
        "warm_median": m.warm_seconds,
        "warm_cpu": m.warm_cpu,
        "warm": [r.seconds for r in m.warm],
        "ok": m.ok if m.cold is not None else all(r.ok for r in m.warm),
        "error": m.error() or None,
    }


def results_json(targets: list[Target], checks: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        **meta,
        "targets": [
            {
                "name": t.name,
                "reference": t.reference,
                "problem": t.problem,
                "raw": _side_json(t.raw),
                "gocaas": {
                    s.variant.key: {**_side_json(s.contender), "last_run": s.last_run} for s in t.sides
                },
                "changed": t.changed.json() if t.changed is not None else None,
            }
            for t in targets
        ],
        "checks": checks,
    }


def failed_runs(targets: list[Target]) -> list[str]:
    failed = []
    for target in targets:
        if target.problem is not None:
            failed.append(f"{target.name}: {target.problem}")
            continue
        for label, m in [
            ("raw", target.raw.result),
            *((s.variant.key, s.contender.result) for s in target.sides),
        ]:
            if m.cold_failed or m.warm_failed:
                failed.append(f"{target.name} {label}")
        if target.changed is not None and not all(r.ok for r in target.changed.raw + target.changed.gocaas):
            failed.append(f"{target.name} one package changed")
    return failed
