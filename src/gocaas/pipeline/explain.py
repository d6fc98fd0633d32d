"""`gocaas cache explain A B`: why build B did not reuse build A's result (or why it did).

It compares what the result cache keyed each build on (`inputs.json`) and each build's source files
(`files.json`), and names what differed, grouped the way a user thinks about it: the toolchain, the
settings (environment), the options (flags), the targets, and the files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gocaas.errors import BadInput
from gocaas.settings import Settings
from gocaas.stages.reuse import FILES_FILE, INPUTS_FILE

_GROUPS = {
    "go_version": "toolchain",
    "goroot": "toolchain",
    "settings": "environment",
    "git_describe": "version stamp",
    "git_commit": "version stamp",
    "changed_since": "options",
    "changed_files": "files",
    "key_version": "gocaas",
    "stages": "pipeline",
}


@dataclass
class Explanation:
    same_key: bool
    differences: dict[str, list[str]] = field(default_factory=dict)  # group -> what differed

    def lines(self) -> list[str]:
        if self.same_key:
            return ["identical inputs: the second build reuses (or could reuse) the first's result"]
        return [f"{group}: {item}" for group, items in self.differences.items() for item in items]


def _load(settings: Settings, build_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}", build_id):  # e.g. 20261125T163000-3f9a1c2e
        raise BadInput(f"not a build id: {build_id[:80]!r}")
    root = settings.builds_dir / build_id
    inputs = _record(root / INPUTS_FILE, build_id)
    if inputs is None:
        raise BadInput(
            f"no inputs recorded for build {build_id} (unknown id, or it stopped before the reuse stage)"
        )
    return inputs, _record(root / FILES_FILE, build_id) or {}


def _record(path: Path, build_id: str) -> dict[str, Any] | None:
    """A JSON object the build wrote; None if it wrote none. A damaged one (a crash or a full disk mid-write)
    is an error naming it, not a traceback."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # ValueError: bad JSON or UTF-8
        raise BadInput(f"build {build_id}: {path.name} is damaged ({e}); it cannot be compared") from None
    if not isinstance(value, dict):
        raise BadInput(f"build {build_id}: {path.name} is damaged (not a JSON object); it cannot be compared")
    return value


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: value}


def explain(settings: Settings, first: str, second: str) -> Explanation:
    inputs_a, files_a = _load(settings, first)
    inputs_b, files_b = _load(settings, second)
    result = Explanation(same_key=inputs_a.get("key") == inputs_b.get("key"))
    if result.same_key:
        return result
    flat_a = _flatten({k: v for k, v in inputs_a.items() if k not in ("key", "source_digest")}, "")
    flat_b = _flatten({k: v for k, v in inputs_b.items() if k not in ("key", "source_digest")}, "")
    for name in sorted(flat_a.keys() | flat_b.keys()):
        if flat_a.get(name) == flat_b.get(name):
            continue
        top = name.split(".", 1)[0]
        group = _GROUPS.get(top, "options")
        if name == "options.targets":
            group = "targets"
        result.differences.setdefault(group, []).append(
            f"{name}: {json.dumps(flat_a.get(name))} → {json.dumps(flat_b.get(name))}"
        )
    if inputs_a.get("source_digest") != inputs_b.get("source_digest"):
        added = sorted(files_b.keys() - files_a.keys())
        removed = sorted(files_a.keys() - files_b.keys())
        changed = sorted(p for p in files_a.keys() & files_b.keys() if files_a[p] != files_b[p])
        items = (
            [f"changed {p}" for p in changed]
            + [f"added {p}" for p in added]
            + [f"removed {p}" for p in removed]
        )
        result.differences.setdefault("files", []).extend(
            items or ["the source digest differs (no file lists recorded)"]
        )
    return result


__all__ = ["Explanation", "explain"]
