"""The quarantine list: known flaky tests that still run and are reported, but cannot fail the build.

It lives in the module, `.gocaas/quarantine`, so it is reviewed and versioned with the code:

    # comments and blank lines are ignored
    TestSometimesSlow                         # this test in any package
    example.com/m/store TestRetryRace         # only in this package
    example.com/m/api TestServer/under_load   # one subtest (and its own subtests)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gocaas.atomic import replacing
from gocaas.errors import BadInput

QUARANTINE_FILE = Path(".gocaas") / "quarantine"

_TEST_RE = re.compile(r"^Test[A-Za-z0-9_]*(/[^\s#]+)?$|^Fuzz[A-Za-z0-9_]*$|^Example[A-Za-z0-9_]*$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*$")


@dataclass(frozen=True, order=True)
class Entry:
    package: str | None
    test: str

    def matches(self, package: str, name: str) -> bool:
        if self.package is not None and self.package != package:
            return False
        return name == self.test or name.startswith(self.test + "/")

    def __str__(self) -> str:
        return f"{self.package} {self.test}" if self.package else self.test


def parse_entry(package: str | None, test: str, where: str = "quarantine entry") -> Entry:
    if not _TEST_RE.fullmatch(test):
        raise BadInput(f"{where}: {test!r} is not a test name (TestX or TestX/subtest)")
    if package is not None and (not _PACKAGE_RE.fullmatch(package) or {".", ".."} & set(package.split("/"))):
        raise BadInput(f"{where}: {package!r} is not a package import path")
    return Entry(package, test)


@dataclass(frozen=True)
class Quarantine:
    entries: tuple[Entry, ...] = ()

    def matches(self, package: str, name: str) -> bool:
        return any(entry.matches(package, name) for entry in self.entries)


def load(module_root: Path) -> Quarantine:
    """Read the module's quarantine file; a malformed line is the user's input error, naming the line."""
    path = module_root / QUARANTINE_FILE
    if not path.is_file():
        if path.exists() or path.parent.is_file():
            raise BadInput(f"{QUARANTINE_FILE}: not a file (gocaas keeps its quarantine list there)")
        return Quarantine()
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) > 2:
            raise BadInput(f"{QUARANTINE_FILE}:{number}: expected 'TestName' or 'package TestName'")
        package, test = (None, fields[0]) if len(fields) == 1 else (fields[0], fields[1])
        entries.append(parse_entry(package, test, f"{QUARANTINE_FILE}:{number}"))
    return Quarantine(tuple(entries))


def save(module_root: Path, quarantine: Quarantine) -> Path:
    """Write the list back, sorted, keeping a header; atomic, like every file gocaas writes."""
    path = module_root / QUARANTINE_FILE
    header = (
        "# Tests that may fail without failing the build (gocaas quarantine). One per line:\n"
        "# TestName, or 'import/path TestName'.\n"
    )
    body = "".join(f"{entry}\n" for entry in sorted(set(quarantine.entries), key=str))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(header + body, encoding="utf-8")
    except OSError as e:
        raise BadInput(f"cannot write {QUARANTINE_FILE}: {e.strerror or e}") from None
    return path
