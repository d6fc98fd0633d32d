"""Which of the module's packages a change touches, for `gocaas test --changed-since REF`.

Input is the stream of `go list -e -deps -test -json ./...`: the packages themselves, every dependency,
and for each package with tests its test variants ("p [p.test]", "p_test [p.test]", ForTest = p) and its
test main ("p.test"), whose Deps together are everything the package's test binary compiles.

A package must run when its own files changed (sources, embedded files, test files, its testdata/), or when a
package its test binary compiles had a change to what it compiles (its sources or embedded files: another
package's tests and testdata are not part of it). go.mod, go.sum or vendor/modules.txt changing can change
any package, so then all run.
"""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

# What the compiler sees of a package: a change here matters to every package that imports it.
_BUILD_FILES = (
    "GoFiles", "CgoFiles", "InvalidGoFiles", "CFiles", "CXXFiles", "MFiles", "HFiles", "FFiles", "SFiles",
    "SwigFiles", "SwigCXXFiles", "SysoFiles", "EmbedFiles",
)  # fmt: skip
# What only the package's own test binary sees.
_TEST_FILES = ("TestGoFiles", "XTestGoFiles", "TestEmbedFiles", "XTestEmbedFiles")
_EVERYTHING_FILES = frozenset({"go.mod", "go.sum", "vendor/modules.txt"})
# The fields read here. Asking go list for only these lets it skip what it would otherwise compute, such
# as staleness, which needs the build cache: 0.19 → 0.13 s on a warm 100-package module.
GO_LIST_FIELDS = (
    "ImportPath", "ForTest", "Name", "Dir", "Module", "DepOnly", "Deps", "Error", "DepsErrors",
    *_BUILD_FILES, *_TEST_FILES,
)  # fmt: skip

Package = Mapping[str, Any]


def go_list_args(patterns: Iterable[str] = ("./...",)) -> list[str]:
    """The go list command whose output affected_packages reads."""
    return ["list", "-e", "-deps", "-test", "-json=" + ",".join(GO_LIST_FIELDS), *patterns]


def parse_go_list_json(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects `go list -json` prints one after the other (not a JSON array)."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(stdout) and stdout[pos].isspace():
            pos += 1
        if pos == len(stdout):
            return objects
        try:
            value, pos = decoder.raw_decode(stdout, pos)
        except json.JSONDecodeError as exc:
            raise ValueError(f"go list printed invalid JSON at offset {pos}: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ValueError(f"go list printed a JSON {type(value).__name__}, not an object, at offset {pos}")
        objects.append(value)


def affected_packages(
    packages: list[dict[str, Any]],
    changed: Iterable[str],
    module_path: str,
    module_root: Path,
    *,
    since: str = "the base ref",
    log: Callable[[str], None] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(the module's packages to test, {package left out: reason}), both sorted.

    `changed` holds paths relative to `module_root`, the directory go list ran in (deleted files included:
    one missing from disk but in a package's directory counts as that package's change). `since` names the
    ref in the reasons; `log` receives why each selected package runs.
    """
    say = log or (lambda _line: None)
    changed_set = {posixpath.normpath(path) for path in changed}
    plain: dict[str, Package] = {}
    test_deps: dict[str, set[str]] = defaultdict(set)
    for entry in packages:
        path = entry.get("ImportPath", "")
        owner = entry.get("ForTest") or (path.removesuffix(".test") if _is_test_main(entry) else None)
        if owner:
            test_deps[owner].update(_base(dep) for dep in entry.get("Deps") or ())
        else:
            plain[path] = entry
    candidates = sorted(p for p, e in plain.items() if not e.get("DepOnly") and _ours(e, module_path))

    everything = sorted(changed_set & _EVERYTHING_FILES)
    if everything:
        say(f"{', '.join(everything)} changed since {since}: every package is affected")
        return candidates, {}

    roots = (module_root, module_root.resolve())  # go reports directories under one or the other
    compiled_change: dict[str, str] = {}  # any package -> a changed file its dependents compile
    for path, entry in plain.items():
        rel = _rel_dir(entry.get("Dir"), roots)
        if rel is not None and (hit := _own_change(entry, rel, changed_set, module_root, build=True)):
            compiled_change[path] = hit

    run: list[str] = []
    skipped: dict[str, str] = {}
    for path in candidates:
        entry = plain[path]
        rel = _rel_dir(entry.get("Dir"), roots)
        own = compiled_change.get(path, "")
        if not own and rel is not None:
            own = _own_change(entry, rel, changed_set, module_root, build=False)
        deps = ({_base(d) for d in entry.get("Deps") or ()} | test_deps[path]) - {path}
        via = sorted(dep for dep in deps if dep in compiled_change)
        if own:
            say(f"{path}: {own} changed")
        elif via:
            say(f"{path}: depends on {via[0]}, where {compiled_change[via[0]]} changed")
        elif entry.get("Error") or entry.get("DepsErrors"):
            # Unchanged but broken (e.g. an import of a deleted package): run it so the failure shows.
            say(f"{path}: go list reports an error for it")
        else:
            skipped[path] = f"no change in its files or its dependencies since {since}"
            continue
        run.append(path)
    return run, skipped


def _own_change(entry: Package, rel_dir: str, changed: set[str], module_root: Path, *, build: bool) -> str:
    """The first changed file of the package (build: what dependents compile; else: test-only files)."""
    for field in _BUILD_FILES if build else _TEST_FILES:
        for name in entry.get(field) or ():
            path = _join(rel_dir, name)
            if path in changed:
                return path
    if not build:
        prefix = _join(rel_dir, "testdata") + "/"
        for path in sorted(changed):
            if path.startswith(prefix):
                return path
    suffixes = (".go",) if build else ("_test.go",)
    for path in sorted(changed):
        # A Go file deleted from the package's directory: go list can't show it any more.
        if (posixpath.dirname(path) or ".") != rel_dir or not path.endswith(suffixes):
            continue
        if build and path.endswith("_test.go"):
            continue
        if not (module_root / path).exists():
            return path
    return ""


def _is_test_main(entry: Package) -> bool:
    """The generated main package of a test binary ("p.test"); a real package may also end in .test."""
    return (
        entry.get("Name") == "main"
        and entry.get("ImportPath", "").endswith(".test")
        and any(Path(name).is_absolute() for name in entry.get("GoFiles") or ())
    )


def _ours(entry: Package, module_path: str) -> bool:
    module = entry.get("Module")
    if module:
        return module.get("Path") == module_path
    path = entry.get("ImportPath", "")
    return path == module_path or path.startswith(module_path + "/")


def _base(import_path: str) -> str:
    """The package behind a test variant: "p [q.test]" is p recompiled for q's tests."""
    return import_path.split(" [", 1)[0]


def _join(rel_dir: str, name: str) -> str:
    return posixpath.normpath(posixpath.join(rel_dir, name))


def _rel_dir(directory: str | None, roots: tuple[Path, ...]) -> str | None:
    """The package directory relative to the module root (as given, or resolved: go names directories
    under the one it ran in), or None when it lies outside (std, module cache). No resolving of the
    directory itself: that is a system call per path element for each of std's hundreds of packages."""
    if not directory:
        return None
    where = Path(directory)
    for root in roots:
        if where.is_relative_to(root):
            return where.relative_to(root).as_posix()
    return None
