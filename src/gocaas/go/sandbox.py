"""The build sandbox: the go commands that run over the module's code see only what that build needs.

`go test` runs the module's test binaries, and they run with the go command's uid and environment: without a
sandbox they could rewrite the shared build cache (poisoning every later build, a read-only namespace's
promise included), the module cache, the state database and other builds' files. So every go command after
the modules stage runs under bubblewrap (`bwrap`, Debian `bubblewrap`), in new mount, PID, IPC, UTS and
cgroup namespaces, without capabilities, and sees:

- read-only: /usr (and the /bin, /lib... links into it), the few files of /etc that programs need (name
  resolution, users, TLS roots, time zone), the toolchain, the module cache, the cache store (whose objects
  go reads), and the Python installation and gocaas itself for the cache program's handoff;
- writable: the build's own directories (source, HOME, TMPDIR, GOPATH, binaries), go's GOCACHE (a private
  one in a read-only namespace: see stages/gocmd.gocache_for) and the stable output directory of a build
  stage;
- a private /tmp, /proc and /dev; the network, unless `sandbox_network` is off (then only a private
  loopback).

The cache program itself runs outside, and the go command reaches it through a socket bound into its
sandbox alone (gocaas.go.outside, gocaas.cache.handoff): it alone writes the store, and the remote's token
and the signing key stay out of the sandbox. The go binary is shown as a copy that can be run but not read
(exec_only): the go command is then not dumpable, so a test cannot open its pipes to that program through
/proc/PID/fd (or read its environment) and speak the cache protocol in its place.

Not isolated: the source tree is writable (tests write testdata), and go test runs tests while it compiles
other packages, so a hostile test can race go between hashing a source file and compiling it. Untrusted code
belongs in a read-only namespace, where the program takes no put.

Why bubblewrap and not `go test -exec`: with an exec wrapper the go command caches no test result (it cannot
read the test's log of files and variables), which would undo the cross-checkout test cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gocaas.atomic import replacing
from gocaas.errors import InfraError

# What programs commonly read from /etc: name resolution, users and groups, TLS roots, the time zone, the
# dynamic linker's cache, and the alternatives that /usr/bin/cc and friends link through.
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
)
# Top-level directories that merged-/usr systems make links into /usr; bound as such, or as they are.
USR_LINKS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")


@dataclass(frozen=True)
class Sandbox:
    """One go command's sandbox: the bwrap program and what the command may read and write."""

    bwrap: Path
    readable: tuple[Path, ...]
    writable: tuple[Path, ...]
    network: bool = True
    # (source, destination): a file shown read-only in place of another (the go binary: exec_only below)
    replaced: tuple[tuple[Path, Path], ...] = ()

    def wrap(self, argv: Sequence[str], cwd: Path) -> list[str]:
        """bwrap's argument list that runs argv in cwd inside the sandbox (the environment passes through)."""
        # --cap-drop ALL: bwrap started by root keeps every capability inside its namespaces, with which the
        # module's tests could remount a read-only bind mount (the shared store) writable.
        args = [str(self.bwrap), "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
        if self.network:
            args.append("--share-net")
        args += ["--ro-bind", "/usr", "/usr"]
        for name in USR_LINKS:
            top = Path("/") / name
            if top.is_symlink():
                args += ["--symlink", str(top.readlink()), str(top)]
            elif top.is_dir():
                args += ["--ro-bind", str(top), str(top)]
        for name in ETC_ENTRIES:
            entry = Path("/etc") / name
            if entry.exists():
                args += ["--ro-bind", str(entry), str(entry)]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        # Parents before children, so that a writable directory inside a read-only tree stays writable; a
        # path given as both is writable.
        readable = set(self.readable) - set(self.writable)
        mounts = sorted(
            {
                *((p, "--ro-bind", p) for p in readable),
                *((p, "--bind", p) for p in self.writable),
                *((dest, "--ro-bind", source) for source, dest in self.replaced),
            }
        )
        for path, how, source in mounts:
            args += [how, str(source), str(path)]
        args += ["--chdir", str(cwd), "--", *argv]
        return args


def python_paths() -> tuple[Path, ...]:
    """What the cache program (a Python process the go command starts) needs to read: the interpreter's
    installation, a virtual environment's, and gocaas's own package."""
    import gocaas

    found = {Path(sys.prefix), Path(sys.base_prefix), Path(gocaas.__file__).resolve().parent}
    executable = Path(sys.executable)
    found.add(executable.parent)
    found.add(executable.resolve().parent.parent)
    return tuple(sorted(p for p in found if p.exists()))


def exec_only(binary: Path, directory: Path) -> Path:
    """A copy of binary that can be run but not read (mode 0111), made once in directory.

    A process started from a file it cannot read is not dumpable: other processes of its user, without
    capabilities (everything in the sandbox), can neither open its /proc/PID/fd entries nor read its
    environment or memory. Run so, the go command keeps its pipes to the cache program, outside the sandbox,
    to itself: a test it runs cannot open them and speak the cache protocol in its place."""
    info = binary.stat()
    where = hashlib.sha256(str(binary).encode()).hexdigest()[:16]
    copy = directory / f"{binary.name}-{where}-{info.st_size}-{info.st_mtime_ns}"
    if copy.exists():
        return copy
    directory.mkdir(parents=True, exist_ok=True)
    with replacing(copy) as partial:
        shutil.copyfile(binary, partial)
        partial.chmod(0o111)
    return copy


def nested(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths made absolute (as the go command sees them: symlinks kept), without duplicates or any path
    already inside another of them."""
    unique = sorted({p.absolute() for p in paths})
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(parent) for parent in kept):
            kept.append(path)
    return tuple(kept)


def find_bwrap(configured: Path | None, search_path: str) -> Path | None:
    """The bwrap program: the configured one, else the first on the system PATH."""
    if configured is not None:
        return configured
    found = shutil.which("bwrap", path=search_path)
    return Path(found) if found else None


@functools.cache
def probe(bwrap: Path) -> str | None:
    """Why bwrap cannot make a sandbox here (None: it can). Asked once per process and program."""
    if not os.access(bwrap, os.X_OK):
        return f"{bwrap} is not an executable file"
    try:
        done = subprocess.run(  # noqa: S603 - fixed argument list
            [str(bwrap), "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} did not run: {exc}"
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        return f"{bwrap} cannot create namespaces here: {said[-1] if said else f'exit {done.returncode}'}"
    return None


NOT_FOUND = "bwrap was not found (Debian: apt-get install bubblewrap)"


def choose(mode: str, bwrap: Path | None) -> tuple[Path | None, str]:
    """For sandbox mode `mode` (on, auto, off): the bwrap to sandbox with (None: run unsandboxed) and, when
    "auto" cannot sandbox, why. With "on", a missing or broken bwrap is an infrastructure error."""
    if mode == "off":
        return None, ""
    problem = NOT_FOUND if bwrap is None else probe(bwrap)
    if problem is None:
        return bwrap, ""
    if mode == "on":
        raise InfraError(f"sandbox is on but {problem}; install it or set GOCAAS_SANDBOX=off", kind="sandbox")
    return None, problem
