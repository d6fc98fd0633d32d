"""The one place a go command's environment is built. Never the caller's environment: every variable the go
command reads is set here from Settings and typed BuildSpec fields, so nothing from the input can add flags
(GOFLAGS=-toolexec=...) or variables."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gocaas.settings import Settings
from gocaas.spec import Target

# Flags gocaas never passes and rejects outright if a code path tried to: they run arbitrary programs or
# swap the module's files under go's feet.
FORBIDDEN_FLAGS = frozenset(
    {"-toolexec", "-exec", "-overlay", "-modfile", "-pkgdir", "-asmflags", "-gccgoflags"}
)

# Always on: reproducible paths in binaries and no VCS stamping from whatever .git happens to exist.
BASE_GOFLAGS = ("-trimpath", "-buildvcs=false")

_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class BuildDirs:
    """Where one build keeps things. `root` is the build's own record (logs, report, inputs); `work` holds
    what the go command sees (the source, HOME, TMPDIR, GOPATH, the binaries): the build's own directory,
    or the project's stable workspace, so that paths go hashes stay the same from build to build."""

    root: Path
    work: Path | None = None

    @property
    def _work(self) -> Path:
        return self.work or self.root

    @property
    def incoming(self) -> Path:
        return self._work / "incoming"

    @property
    def src(self) -> Path:
        return self._work / "src"

    @property
    def home(self) -> Path:
        return self._work / "home"

    @property
    def tmp(self) -> Path:
        return self._work / "tmp"

    @property
    def gopath(self) -> Path:
        return self._work / "gopath"

    @property
    def bin(self) -> Path:
        return self._work / "bin"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scratch(self) -> tuple[Path, ...]:
        """What a build may leave behind and the next one starts without."""
        return (self.incoming, self.home, self.tmp, self.gopath, self.bin)

    def create(self) -> None:
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.home, self.tmp, self.gopath, self.bin, self.logs):
            path.mkdir(parents=True, exist_ok=True)


def check_flags(args: Sequence[str]) -> None:
    """Refuse a forbidden flag anywhere in an argument list (a programming error, never user input)."""
    for arg in args:
        name = arg.split("=", 1)[0].replace("--", "-", 1) if arg.startswith("-") else ""
        if name in FORBIDDEN_FLAGS:
            raise ValueError(f"refusing to pass {name} to the go command")


def go_environ(
    settings: Settings,
    goroot: Path,
    dirs: BuildDirs,
    *,
    target: Target | None = None,
    cgo: bool = False,
    goflags: Sequence[str] = (),
    goproxy: str | None = None,
    gosumdb: str | None = None,
    gocache: Path | None = None,
    cacheprog: str | None = None,
    cache_stats: Path | None = None,
) -> dict[str, str]:
    """The complete environment of one go command. With `cacheprog`, the go command's build cache is that
    GOCACHEPROG program (GOCACHE stays set: go still keeps its fuzzing corpus there)."""
    flags = (*BASE_GOFLAGS, *goflags)
    check_flags(flags)
    env: dict[str, str] = {
        "PATH": f"{goroot / 'bin'}:{settings.system_path}",
        "HOME": str(dirs.home),
        "TMPDIR": str(dirs.tmp),
        "GOTMPDIR": str(dirs.tmp),
        "GOPATH": str(dirs.gopath),
        "GOROOT": str(goroot),
        "GOCACHE": str(gocache or settings.gocache),
        "GOMODCACHE": str(settings.gomodcache),
        "GOENV": "off",  # no user-level go env file
        "GOWORK": "off",  # a go.work outside the module must not change what is built
        "GOTOOLCHAIN": "local",  # the toolchain we resolved, never a silent download
        "GOTELEMETRY": "off",
        "GOFLAGS": " ".join(flags),
        "GOPROXY": goproxy if goproxy is not None else settings.goproxy,
        "GOPRIVATE": settings.goprivate,
        "GONOPROXY": settings.gonoproxy,
        "GONOSUMDB": settings.gonosumdb,
        "GOSUMDB": gosumdb if gosumdb is not None else settings.gosumdb,
        "GOINSECURE": "",
        "CGO_ENABLED": "1" if cgo else "0",
        "GIT_TERMINAL_PROMPT": "0",
        "LANG": "C.UTF-8",
    }
    if cacheprog is not None:
        env["GOCACHEPROG"] = cacheprog
        if cache_stats is not None:
            env["GOCAAS_CACHEPROG_STATS"] = str(cache_stats)
        if settings.cache_remote_token is not None:
            # Test binaries see this too: give builds of untrusted code a read-only token.
            env["GOCAAS_CACHE_TOKEN"] = settings.cache_remote_token.get_secret_value()
    if target is not None:
        env["GOOS"] = target.goos
        env["GOARCH"] = target.goarch
    return env


def inspect_environ() -> dict[str, str]:
    """A bare environment for go commands that only ask the toolchain about itself (version, dist list)."""
    return {
        "PATH": _SYSTEM_PATH,
        "HOME": "/nonexistent",
        "GOENV": "off",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "GOFLAGS": "",
    }
