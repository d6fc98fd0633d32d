"""`gocaas cache explain A B`: why build B did not reuse build A's result (or why it did).

It compares what the result cache keyed each build on (`inputs.json`) and each build's source files
(`files.json`), and names what differed, grouped the way a user thinks about it: the toolchain, the
settings (environment), the options (flags), the targets, and the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    if not build_id or "/" in build_id or build_id.startswith("."):
        raise BadInput(f"not a build id: {build_id!r}")
    root = settings.builds_dir / build_id
    try:
        inputs = json.loads((root / INPUTS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(
            f"no inputs recorded for build {build_id} (unknown id, or it stopped before the reuse stage)"
        ) from None
    try:
        files = json.loads((root / FILES_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        files = {}
    return inputs, files


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
