"""The compiled attacher (attacher.go): what the go command starts as its GOCACHEPROG when a cache program
elsewhere serves it.

Two of gocaas's ways of running a go command hand the go command's pipes to a cache program that is
already running: a sandboxed go command to the program gocaas started for it outside the sandbox
(handoff.py), and any go command to a resident cache program (resident.py). The program the go command
starts then only connects to a unix socket, passes its stdin, stdout and stderr, and exits; the go command
waits for it every time. Python needs ~10-17 ms for that, a compiled program ~1 ms: on a warm build of
~1,000 packages that is the difference between the resident program and the protocol's floor
(bench/README.md). When the resident program does not take the go command, the attacher execs the Python
cache program with the same descriptors, which serves it as before.

Built once per data directory and version of attacher.go (its digest names the binary), with the go of the
first build that wants it, in the background: that build and any started meanwhile start Python's program
as before. A build that fails is tried again after RETRY_AFTER_S; its reason is in the marker file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from gocaas.cache.command import LAUNCHER

SOURCE = Path(__file__).with_name("attacher.go")
BUILD_TIMEOUT_S = 600.0
RETRY_AFTER_S = 3600.0  # after a build that failed (or died): the marker blocks new attempts this long
KEY_SUFFIX = ".key"


class AttacherBuildError(RuntimeError):
    """go could not build attacher.go: the message carries go's output."""


@functools.cache
def _source_digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def attacher_path(helpers_dir: Path) -> Path:
    """Where the attacher of this gocaas's attacher.go lives in helpers_dir (built or not)."""
    return helpers_dir / f"gocaas-attach-{_source_digest()}"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".building")


def find_attacher(helpers_dir: Path, go: Path, gocache: Path) -> Path | None:
    """The attacher, when it is built; else None, after starting its build in the background (one at a
    time; not again for RETRY_AFTER_S after one that failed)."""
    path = attacher_path(helpers_dir)
    if os.access(path, os.X_OK):
        return path
    if path.exists():  # built, but it cannot run here (a noexec mount): building it again would not help
        return None
    marker = _marker(path)
    try:
        if time.time() - marker.stat().st_mtime < RETRY_AFTER_S:
            return None  # being built, or failed lately
        marker.unlink()
    except FileNotFoundError:
        pass
    try:
        helpers_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError:  # another one started it just now, or a data directory we cannot write
        return None
    try:
        subprocess.Popen(  # noqa: S603 - gocaas's own module, an argument list
            [sys.executable, "-m", "gocaas.cache.attacher", str(go), str(path), str(gocache)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,  # what it could not say in the marker (it writes its failure there)
            start_new_session=True,  # it outlives a one-shot `gocaas build`
            close_fds=True,
            cwd="/",
        )
    except OSError as e:
        os.write(fd, f"cannot start the build: {e}\n".encode())
    finally:
        os.close(fd)
    return None


def build_attacher(go: Path, path: Path, gocache: Path) -> Path:
    """Compile attacher.go with go into path (atomically: a reader sees all of it or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".attacher-") as tmp:
        shutil.copyfile(SOURCE, Path(tmp) / SOURCE.name)  # out of any go.mod or go.work around the package
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "TMPDIR": tmp,
            "GOCACHE": str(gocache),
            "GOENV": "off",  # no user's go env file, GOFLAGS, toolchain switch or cgo
            "GOFLAGS": "",
            "GOTOOLCHAIN": "local",
            "GOWORK": "off",
            "GOPROXY": "off",
            "CGO_ENABLED": "0",
        }
        out = Path(tmp) / "gocaas-attach"
        argv = [str(go), "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), SOURCE.name]
        try:
            done = subprocess.run(  # noqa: S603 - an argument list
                argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AttacherBuildError(f"{go} build {SOURCE.name}: {e}") from e
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise AttacherBuildError(f"{go} build {SOURCE.name} exited {done.returncode}: {said}")
        out.chmod(0o755)
        out.replace(path)
    return path


def handoff_command(attacher: Path, socket: Path) -> list[str]:
    """GOCACHEPROG argv that hands the go command to the program listening at socket (handoff.py's)."""
    return [str(attacher), "handoff", str(socket)]


def resident_command(attacher: Path, argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """GOCACHEPROG argv for the --resident cache program argv (command.cacheprog_argv's), run with environ:
    the attacher hands the go command to the resident program that argv would, else runs argv. argv as it
    is when it cannot (no private runtime directory)."""
    from gocaas.cache.options import parse_args
    from gocaas.cache.resident import resident_key, socket_path

    if len(argv) < 4 or argv[3] != LAUNCHER:
        raise ValueError(f"not a cache program's command line: {' '.join(argv[:4])}")
    opts = parse_args(list(argv[4:]), environ)
    if not opts.resident:
        raise ValueError("the cache program is not --resident")
    key = resident_key(opts)
    path = socket_path(key, opts.runtime_dir, dict(environ))
    if path is None:
        return list(argv)
    key_file = path.removesuffix(".sock") + KEY_SUFFIX
    _write_private(key_file, key.encode())
    return [str(attacher), "resident", path, key_file, opts.namespace, *argv]


def _write_private(path: str, data: bytes) -> None:
    """path holds data, readable by this user only (a key may hold the remote's token)."""
    target = Path(path)
    try:
        if target.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str]) -> int:
    """`python -m gocaas.cache.attacher GO PATH GOCACHE`: find_attacher's background build. Its marker
    is removed when the build succeeds, and holds go's reason when it fails."""
    go, path, gocache = (Path(arg) for arg in argv)
    marker = _marker(path)
    try:
        build_attacher(go, path, gocache)
    except (AttacherBuildError, OSError) as e:
        marker.write_text(f"{e}\n")
        return 1
    marker.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
