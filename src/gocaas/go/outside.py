"""The cache program of a sandboxed go command, run outside the sandbox (gocaas.cache.handoff says how
and why): the module's tests then cannot write the store, read the remote's token or the signing key, or
kill the program's after-session work."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gocaas.cache.attacher import handoff_command
from gocaas.cache.command import go_quote

HANDOFF = str(Path(__file__).resolve().parent.parent / "cache" / "handoff.py")


@dataclass(frozen=True)
class Handoff:
    """What the go command needs to reach its outside program: its GOCACHEPROG, and the directory of the
    socket, which its sandbox must bind."""

    gocacheprog: str
    directory: Path
    program: subprocess.Popen[bytes]


class HandoffUnavailable(OSError):
    """The program could not be started outside the sandbox (no socket, no process): raised before the with
    block runs, never from it."""


@contextlib.contextmanager
def cacheprog_outside(
    argv: Sequence[str],
    env: Mapping[str, str],
    on_error: Callable[[str], None],
    python: str = sys.executable,
    attacher: Path | None = None,
) -> Iterator[Handoff]:
    """Start the cache program argv (with env) outside the sandbox, listening for one go command, for the
    span of the with block. The go command reaches it through the compiled attacher when given
    (gocaas.cache.attacher), else through handoff.py. What the program said before a go command reached
    it (why it could not start) goes to on_error at the end; later, it speaks on the go command's stderr.
    HandoffUnavailable when it cannot be started at all."""
    # A directory of its own: private (0700), and short: a socket's path has at most 107 bytes.
    base = tempfile.gettempdir()
    try:
        directory = Path(tempfile.mkdtemp(prefix="gocaas-cp-", dir="/tmp" if len(base) > 64 else base))
    except OSError as e:
        raise HandoffUnavailable(f"no directory for its socket: {e}") from e
    path = directory / "socket"
    try:
        with tempfile.TemporaryFile() as said, socket.socket(socket.AF_UNIX) as listener:
            try:
                listener.bind(str(path))
                listener.listen(1)
                fd = listener.fileno()
                program = subprocess.Popen(  # noqa: S603 - gocaas's own program, an argument list
                    [*argv, "--attach-fd", str(fd), "--parent", str(os.getpid())],
                    env=dict(env),
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=said,
                    start_new_session=True,  # not in the go command's process group: its kill spares us
                )
            except OSError as e:
                raise HandoffUnavailable(f"{path}: {e}") from e
            listener.close()  # the program's copy is the one that accepts
            try:
                reach = [python, "-I", "-S", HANDOFF, str(path)]
                if attacher is not None:
                    reach = handoff_command(attacher, path)
                yield Handoff(go_quote(reach), directory, program)
            finally:
                _wake(path)
                said.seek(0)
                if before := said.read().decode(errors="replace").strip():
                    on_error(before)
                # Its after-session work (a gc, prefetched entries) goes on without us, as it does when the
                # go command starts it; a thread reaps it.
                threading.Thread(target=program.wait, daemon=True, name="cacheprog-reaper").start()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _wake(path: Path) -> None:
    """Connect and hand over nothing: a program still waiting for its go command (which failed before it
    asked) exits. Once the go command has connected, the socket is gone and this does nothing."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))


def environ_inside(env: Mapping[str, str], handoff: Handoff, hidden: Sequence[str]) -> dict[str, str]:
    """The go command's environment: GOCACHEPROG the handoff, without what only the program needs."""
    return {**{k: v for k, v in env.items() if k not in hidden}, "GOCACHEPROG": handoff.gocacheprog}
